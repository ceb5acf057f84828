import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking eventfd: the kit's wake-up signal between threads and the kick/call descriptors' type.
public final class EventFD: @unchecked Sendable {
    public let descriptor: OwnedDescriptor
    public var rawValue: Int32 { descriptor.rawValue }

    public init() throws(VhostUserError) {
        descriptor = OwnedDescriptor(try systemCall("eventfd") { vhu_eventfd(0) })
    }
    /// Wraps an eventfd received from a peer.
    public init(adopting descriptor: OwnedDescriptor) { self.descriptor = descriptor }

    /// Adds 1 to the counter, waking a waiter.
    @inline(__always)
    public func signal() {
        var one: UInt64 = 1
        _ = write(rawValue, &one, 8)
    }

    /// Reads and resets the counter; returns 0 when it was not signalled (or the fd is not an eventfd).
    @discardableResult @inline(__always)
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        return read(rawValue, &value, 8) == 8 ? value : 0
    }

    /// Waits until signalled or `timeoutMilliseconds` pass; returns whether it was signalled (and drains it).
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        waitReadable(rawValue, timeoutMilliseconds: timeoutMilliseconds) && drain() > 0
    }
}
