import CSystemd
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd what the daemon is doing (sd_notify): READY=1 once listening, STATUS= lines,
/// STOPPING=1, and WATCHDOG=1 pings at half the interval when WATCHDOG_USEC asks for them.
/// Without NOTIFY_SOCKET every call is a no-op.
final class ServiceNotifier: Sendable {
    private let watchdogThread: PosixThread?
    private let stopWatchdog: EventFD?

    init() throws {
        var usec: UInt64 = 0
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            let stop = try EventFD()
            let interval = Int32(clamping: max(1, usec / 2000))
            stopWatchdog = stop
            watchdogThread = PosixThread {
                while !stop.wait(timeoutMilliseconds: interval) { ServiceNotifier.send("WATCHDOG=1") }
            }
        } else {
            stopWatchdog = nil
            watchdogThread = nil
        }
    }

    func handle(_ event: Daemon.Event, identity: DaemonIdentity) {
        switch event {
        case let .listening(where_):
            Self.send("READY=1\nSTATUS=waiting for a front-end on \(where_)")
        case .frontendConnected:
            Self.send("STATUS=front-end connected, setting up")
        case let .queuesRunning(n):
            Self.send("STATUS=serving a front-end: \(n) queue\(n == 1 ? "" : "s") running")
        case .frontendDisconnected:
            Self.send("STATUS=front-end disconnected, waiting for the next one")
        case .stopping:
            Self.send("STOPPING=1\nSTATUS=stopping")
        }
    }

    func finish() {
        stopWatchdog?.signal()
        watchdogThread?.join()
    }

    static func send(_ state: String) { _ = sd_notify(0, state) }
}
