import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// An epoll set whose events are identified by caller-chosen tokens.
final class Epoll {
    private let descriptor: OwnedDescriptor

    init() throws(SystemError) {
        descriptor = OwnedDescriptor(try systemCall("epoll_create1") { vhu_epoll_create() })
    }

    /// Watches `fd` for readability. `edgeTriggered` reports each new event once (for descriptors a
    /// peer controls, which could otherwise stay ready forever: a hung-up pipe, a semaphore eventfd).
    func add(_ fd: Int32, token: UInt64, edgeTriggered: Bool = false) throws(SystemError) {
        try systemCall("epoll_ctl") { vhu_epoll_add(descriptor.rawValue, fd, token, edgeTriggered ? 1 : 0) }
    }

    /// Waits for readiness (timeout -1 = forever) and returns the number of tokens written to `tokens`.
    @inline(__always)
    func wait(into tokens: UnsafeMutablePointer<UInt64>, capacity: Int32, timeoutMilliseconds: Int32) -> Int {
        max(0, Int(vhu_epoll_wait(descriptor.rawValue, tokens, capacity, timeoutMilliseconds)))
    }
}
