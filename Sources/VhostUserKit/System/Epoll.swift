import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// What a descriptor is watched for, and what it was found ready for.
public struct Readiness: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = Readiness(rawValue: UInt32(VHU_READABLE))
    public static let writable = Readiness(rawValue: UInt32(VHU_WRITABLE))
    /// Reported only: the peer hung up or the descriptor has an error (EPOLLHUP, EPOLLERR, EPOLLRDHUP).
    public static let hangUp = Readiness(rawValue: UInt32(VHU_HANGUP))
}

/// An epoll set whose events are identified by caller-chosen tokens.
final class Epoll {
    private let descriptor: OwnedDescriptor

    init() throws(SystemError) {
        descriptor = OwnedDescriptor(try systemCall("epoll_create1") { vhu_epoll_create() })
    }

    /// Watches `fd` for `interest`. `edgeTriggered` reports each new event once (for descriptors a
    /// peer controls, which could otherwise stay ready forever: a hung-up pipe, a semaphore eventfd).
    func add(_ fd: Int32, token: UInt64, interest: Readiness = .readable, edgeTriggered: Bool = false) throws(SystemError) {
        let bits = interest.rawValue | (edgeTriggered ? UInt32(VHU_EDGE) : 0)
        try systemCall("epoll_ctl") { vhu_epoll_ctl(descriptor.rawValue, 0, fd, bits, token) }
    }

    /// Changes what `fd` (already added) is watched for.
    func modify(_ fd: Int32, token: UInt64, interest: Readiness) throws(SystemError) {
        try systemCall("epoll_ctl") { vhu_epoll_ctl(descriptor.rawValue, 1, fd, interest.rawValue, token) }
    }

    /// Stops watching `fd`. A descriptor already closed has left the set by itself: not an error.
    func remove(_ fd: Int32) {
        _ = vhu_epoll_ctl(descriptor.rawValue, 2, fd, 0, 0)
    }

    /// Waits for readiness (timeout -1 = forever) and returns the number of events written to `tokens`
    /// and, when given, `ready` (at most 16 per call).
    @inline(__always)
    func wait(into tokens: UnsafeMutablePointer<UInt64>, ready: UnsafeMutablePointer<UInt32>? = nil, capacity: Int32,
              timeoutMilliseconds: Int32) -> Int {
        max(0, Int(vhu_epoll_wait(descriptor.rawValue, tokens, ready, capacity, timeoutMilliseconds)))
    }
}
