import CVhostUser

/// A joinable POSIX thread running one closure. The kit uses plain threads, not Swift concurrency,
/// because queue workers block in epoll and must never share an executor.
public final class PosixThread: @unchecked Sendable {
    private var handle: UInt64 = 0
    private var joined = false

    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread, named `name` when given (what `top -H` shows). The closure is
    /// handed over to that thread and not used here again.
    public init(name: String? = nil, _ body: sending @escaping () -> Void) {
        let start = Unmanaged.passRetained(Start(body)).toOpaque()
        let rc = vhu_thread_start(&handle, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, start, name)
        precondition(rc == 0, "pthread_create failed with \(rc)")
    }

    /// Waits for the thread to finish. Calling it twice is harmless.
    public func join() {
        guard !joined else { return }
        joined = true
        _ = vhu_thread_join(handle)
    }

    deinit { join() }
}
