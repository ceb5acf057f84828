import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Runs a daemon the conventional way: `--print-capabilities` prints and exits 0; otherwise the device
/// is made, the socket resolved, the sandbox entered (`--user`, inherited descriptors closed, the
/// seccomp filter of `SandboxPolicy.daemonRuntime` plus `identity.sandbox`), systemd told, and
/// front-ends served until SIGTERM/SIGINT. Anything that prevents start-up ends the process with
/// status 1 and one clear line on stderr. Call it before the executable opens anything.
///
/// `makeDevice` runs on the calling thread before any other thread starts (a signal it blocks stays
/// blocked in every thread), opens everything the device needs, and adopts an inherited descriptor
/// by marking it close-on-exec (any other inherited one is closed when the sandbox is entered).
public func runDaemon(_ identity: DaemonIdentity, options: DaemonOptions,
                      makeDevice: () throws -> any VhostUserDevice) -> Never {
    let inherited = InheritedDescriptors.snapshot()
    if options.printCapabilities {
        print(identity.capabilitiesJSON)
        exit(0)
    }
    // Before any thread starts, so that a SIGTERM during start-up waits for its handler.
    ShutdownSignals.block()
    LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: options.logLevel) }
    let logger = Logger(label: identity.name)
    do {
        let credentials = try options.user.map { user throws(StartupError) in try UserCredentials.resolve(user: user, group: options.group) }
        let probe = try SandboxProbe.fromEnvironment()
        let device = try makeDevice()
        let endpoint = try ListenEndpoint.resolve(options)
        let notifier = try ServiceNotifier()
        let daemon = try Daemon(device: device, configuration: .init(pollMicroseconds: options.pollMicroseconds ?? identity.defaultPollMicroseconds),
                                logger: logger, onEvent: { notifier.handle($0, identity: identity) })
        ShutdownSignals.install { daemon.requestShutdown() }
        let sandbox = Sandbox(mode: options.sandbox, credentials: credentials,
                              policy: SandboxPolicy.daemonRuntime.union(identity.sandbox), inherited: inherited)
        try sandbox.enter(logger: logger)
        probe?.run(logger: logger)
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
