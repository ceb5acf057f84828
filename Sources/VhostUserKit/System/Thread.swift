import CVhostUser

/// A joinable POSIX thread running one closure. The kit uses plain threads, not Swift concurrency,
/// because queue workers block in epoll and must never share an executor.
public final class PosixThread: Sendable {
    private let handle: UInt64
    /// Whether the thread has been joined; the lock also makes a second concurrent `join` wait.
    private let joined = Locked(false)

    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread, named `name` when given (what `top -H` shows). The closure is
    /// handed over to that thread and not used here again.
    public init(name: String? = nil, _ body: sending @escaping () -> Void) {
        let start = Unmanaged.passRetained(Start(body)).toOpaque()
        var handle: UInt64 = 0
        let rc = vhu_thread_start(&handle, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, start, name)
        precondition(rc == 0, "pthread_create failed with \(rc)")
        self.handle = handle
    }

    /// Waits for the thread to finish. Calling it twice, or from two threads, is harmless.
    public func join() {
        joined.withLock { joined in
            guard !joined else { return }
            joined = true
            _ = vhu_thread_join(handle)
        }
    }

    deinit { join() }
}
