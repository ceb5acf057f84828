import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Runs a daemon the conventional way: `--print-capabilities` prints and exits 0; otherwise the device
/// is made, the socket resolved, systemd told, and front-ends served until SIGTERM/SIGINT. Anything
/// that prevents start-up ends the process with status 1 and one clear line on stderr.
public func runDaemon(_ identity: DaemonIdentity, options: DaemonOptions,
                      makeDevice: () throws -> any VhostUserDevice) -> Never {
    if options.printCapabilities {
        print(identity.capabilitiesJSON)
        exit(0)
    }
    // Before any thread starts, so that a SIGTERM during start-up waits for its handler.
    ShutdownSignals.block()
    LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: options.logLevel) }
    let logger = Logger(label: identity.name)
    do {
        let device = try makeDevice()
        let endpoint = try ListenEndpoint.resolve(options)
        let notifier = try ServiceNotifier()
        let daemon = try Daemon(device: device, configuration: .init(pollMicroseconds: options.pollMicroseconds ?? identity.defaultPollMicroseconds),
                                logger: logger, onEvent: { notifier.handle($0, identity: identity) })
        ShutdownSignals.install { daemon.requestShutdown() }
        switch endpoint {
        case let .listener(listener):
            try daemon.serve(listener: listener)
        case let .connection(connection):
            notifier.handle(.listening("an inherited connected socket"), identity: identity)
            daemon.serve(connection: connection)
            notifier.handle(.stopping, identity: identity)
        }
        notifier.finish()
        exit(0)
    } catch {
        logger.critical("\(error)")
        exit(1)
    }
}
