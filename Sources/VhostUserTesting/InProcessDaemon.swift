import Logging
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A daemon serving `device` on a fresh socket path from a thread of this process, so tests drive a
/// device through the real protocol without a separate executable.
public final class InProcessDaemon {
    public let socketPath: String
    public let daemon: Daemon
    private var thread: PosixThread?

    private static let counter = Atomic<Int>(0)

    public init(device: any VhostUserDevice, pollMicroseconds: UInt64 = 0, logLevel: Logger.Level = .critical) throws {
        let n = Self.counter.add(1, ordering: .relaxed).newValue
        socketPath = "/tmp/vhu-test-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max)).sock"
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
