import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A daemon serving `device` on a fresh socket path from a thread of this process, so tests drive a
/// device through the real protocol without a separate executable.
public final class InProcessDaemon: @unchecked Sendable {
    public let socketPath: String
    public let daemon: Daemon
    private var thread: PosixThread?

    nonisolated(unsafe) private static var counter = 0

    public init(device: any VhostUserDevice, pollMicroseconds: UInt64 = 0, logLevel: Logger.Level = .critical) throws {
        Self.counter += 1
        socketPath = "/tmp/vhu-test-\(getpid())-\(Self.counter)-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test-daemon") { StderrLogHandler(label: $0, level: logLevel) }
        logger.logLevel = logLevel
        daemon = try Daemon(device: device, configuration: .init(pollMicroseconds: pollMicroseconds), logger: logger)
        let listener = try UnixListener(path: socketPath)
        let daemon = self.daemon
        thread = PosixThread { try? daemon.serve(listener: listener) }
    }

    /// A new front-end connection to the daemon.
    public func connect() throws -> FakeFrontend { try FakeFrontend.connect(to: socketPath) }

    /// Stops the daemon (its current session first) and removes the socket.
    public func stop() {
        daemon.requestShutdown()
        thread?.join()
        thread = nil
        unlink(socketPath)
    }

    deinit { stop() }
}
