import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Serves one device to one front-end at a time, for as long as the process lives: accept, run the
/// session, clean up, accept the next front-end on the same socket.
public final class Daemon: Sendable {
    public struct Configuration: Sendable {
        /// How long a queue worker keeps polling its ring after it runs dry before it sleeps
        /// (0 = sleep at once).
        public var pollMicroseconds: UInt64
        public init(pollMicroseconds: UInt64 = 0) { self.pollMicroseconds = pollMicroseconds }
    }

    /// What the daemon is doing, for a service manager's status line.
    public enum Event: Sendable, Equatable {
        case listening(String)
        case frontendConnected
        /// The number of queues running changed.
        case queuesRunning(Int)
        case frontendDisconnected
        case stopping
    }

    public let device: any VhostUserDevice
    public let configuration: Configuration
    private let logger: Logger
    private let shutdownEvent: EventFD
    private let onEvent: @Sendable (Event) -> Void

    public init(device: any VhostUserDevice, configuration: Configuration = .init(), logger: Logger,
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) throws(SystemError) {
        // A write to a call descriptor or socket whose reader is gone must fail with EPIPE, not kill
        // the process: a daemon never wants SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        // Before any guest memory is mapped (and before a sandbox that may forbid sigaction).
        MemoryGuard.install()
        self.device = device
        self.configuration = configuration
        self.logger = logger
        self.shutdownEvent = try EventFD()
        self.onEvent = onEvent
    }

    /// Makes `serve` return after the current front-end's queues are stopped. Safe from any thread.
    public func requestShutdown() { shutdownEvent.signal() }

    /// Accepts front-ends on `listener` one after another until shutdown is requested.
    public func serve(listener: UnixListener) throws(UnixSocketError) {
        let name = listener.path ?? "inherited socket fd \(listener.socket.rawValue)"
        logger.info("listening on \(name)")
        onEvent(.listening(name))
        while true {
            let ready = try? waitReadable([listener.socket.rawValue, shutdownEvent.rawValue])
            if ready == 1 { break }
            let connection = try listener.accept()
            serve(connection: connection)
            if (try? waitReadable([shutdownEvent.rawValue], timeoutMilliseconds: 0)) == 0 { break }
        }
        logger.info("shutting down")
        onEvent(.stopping)
    }

    /// Serves one connected front-end until it disconnects, breaks the protocol, or shutdown is requested.
    public func serve(connection: OwnedDescriptor) {
        logger.info("front-end connected")
        onEvent(.frontendConnected)
        let onEvent = self.onEvent
        let session = Session(device: device, socket: connection, logger: logger,
                              pollNanoseconds: configuration.pollMicroseconds * 1000,
                              onQueuesRunning: { onEvent(.queuesRunning($0)) })
        defer { onEvent(.frontendDisconnected) }
        do {
            try session.run(shutdown: shutdownEvent)
            logger.info("front-end disconnected")
        } catch .interrupted {
            // A shutdown request (SIGTERM) that came while the session waited for the rest of a
            // message or for a reply: not the front-end's fault, and not an error.
            logger.info("front-end disconnected (shutting down)")
        } catch {
            logger.error("dropping the front-end: \(error)")
        }
    }
}
