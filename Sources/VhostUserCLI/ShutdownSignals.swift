import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGTERM and SIGINT into a call of a handler on a thread of its own (not inside a signal
/// handler), without ever losing one.
///
/// `block()` must run before the process starts any thread: every thread created afterwards inherits
/// the mask, so the signals stay pending (a signal sent during start-up is not lost, nor does it kill
/// the process) until `install` waits for them with sigwait. (A dispatch signal source is not enough
/// on Linux: it is registered asynchronously, and a signal that arrives before it is — while the
/// disposition is SIG_IGN — is dropped, so a daemon could report READY=1 and then ignore SIGTERM.)
enum ShutdownSignals {
    nonisolated(unsafe) private static var waiter: PosixThread?

    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }

    /// Blocks SIGTERM and SIGINT in the calling thread and so in every thread it starts later.
    static func block() {
        var signals = set
        pthread_sigmask(SIG_BLOCK, &signals, nil)
    }

    /// Calls `handler` for every SIGTERM or SIGINT, pending ones included. Call `block()` first.
    static func install(_ handler: @escaping @Sendable () -> Void) {
        block()
        waiter = PosixThread {
            var signals = ShutdownSignals.set
            while true {
                var received: Int32 = 0
                if sigwait(&signals, &received) == 0 { handler() }
            }
        }
    }
}
