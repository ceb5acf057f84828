import ArgumentParser
import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Options every vhost-user daemon has (QEMU's "backend program conventions").
public struct DaemonOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: "The unix socket to create and listen on; it is kept across front-end reconnects.")
    public var socketPath: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    public var logLevel: Logger.Level = .info

    @Option(name: .customLong("poll-us"), help: "Microseconds a queue worker keeps polling its ring before it sleeps.")
    public var pollMicroseconds: UInt64 = 0

    public init() {}
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs `device` on the socket the options name until SIGTERM/SIGINT; exits non-zero with one clear
/// stderr line when it cannot start.
public func runDaemon(_ name: String, device: any VhostUserDevice, options: DaemonOptions) throws -> Never {
    LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: options.logLevel) }
    let logger = Logger(label: name)
    do {
        let daemon = try Daemon(device: device, configuration: .init(pollMicroseconds: options.pollMicroseconds), logger: logger)
        let listener = try UnixListener(path: options.socketPath)
        ShutdownSignals.install { daemon.requestShutdown() }
        try daemon.serve(listener: listener)
        exit(0)
    } catch {
        logger.critical("\(error)")
        exit(1)
    }
}
