import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking eventfd: the kit's wake-up signal between threads and the kick/call/err descriptors'
/// type. Descriptors from a peer may be anything (a pipe, a blocking eventfd, a semaphore eventfd),
/// so every operation is non-blocking and reports what happened instead of trapping or waiting.
public final class EventFD: Sendable {
    public let descriptor: OwnedDescriptor
    public var rawValue: Int32 { descriptor.rawValue }

    /// A new eventfd. With `semaphore`, each wake-up (`drain`, `wait`) takes one signal, so n signals
    /// wake n waiters: a job queue for a pool of threads.
    public init(semaphore: Bool = false) throws(SystemError) {
        descriptor = OwnedDescriptor(try systemCall("eventfd") { vhu_eventfd(0, semaphore ? 1 : 0) })
    }

    /// Wraps a descriptor received from a peer and makes it non-blocking, so that a counter near its
    /// maximum or a full pipe can never block the thread that signals it.
    public init(adopting descriptor: OwnedDescriptor) {
        _ = vhu_set_nonblocking(descriptor.rawValue)
        self.descriptor = descriptor
    }

    /// Adds 1 to the counter, waking a waiter. Returns false when the descriptor is unusable (EPIPE,
    /// EBADF, EINVAL...). A full counter (EAGAIN) counts as signalled: the reader has a wake-up pending.
    @discardableResult @inline(__always)
    public func signal() -> Bool {
        var one: UInt64 = 1
        while true {
            if write(rawValue, &one, 8) == 8 { return true }
            switch errno {
            case EINTR: continue
            case EAGAIN: return true
            default: return false
            }
        }
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
