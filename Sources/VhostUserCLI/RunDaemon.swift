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
    serveDevices(identity, options: options) {
        let device = try makeDevice()
        return [(device, try ListenEndpoint.resolve(options))]
    }
}

/// Runs several devices in one process, each on its own vhost-user socket at `socketPath` (e.g. one
/// vsock device per VM of a group, whose guests talk to each other through the process): as
/// `runDaemon`, except that the sockets come from `makeDevices` instead of `--socket-path`, `--fd` or
/// socket activation. Each socket is served on a thread of its own, one front-end at a time; SIGTERM
/// stops them all.
public func runDaemons(_ identity: DaemonIdentity, options: DaemonOptions,
                       makeDevices: () throws -> [(socketPath: String, device: any VhostUserDevice)]) -> Never {
    serveDevices(identity, options: options) {
        try makeDevices().map { ($0.device, ListenEndpoint.listener(try UnixListener(path: $0.socketPath))) }
    }
}

/// What `runDaemon` and `runDaemons` share: start-up, sandbox, and each device served on its endpoint.
private func serveDevices(_ identity: DaemonIdentity, options: DaemonOptions,
                          make: () throws -> [(any VhostUserDevice, ListenEndpoint)]) -> Never {
    let inherited = InheritedDescriptors.snapshot()
    if options.printCapabilities {
        print(identity.capabilitiesJSON)
        exit(0)
    }
    // Before any thread starts, so that a SIGTERM during start-up waits for its handler.
    ShutdownSignals.block()
    LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: options.logLevel) }
    let logger = Logger(label: identity.name)
    // Closed before exit() rather than in an atexit handler: a sanitizer's runtime runs those after
    // the libraries' static destructors (librbd's among them).
    var devices: [any VhostUserDevice] = []
    func closeDevices() { for device in devices { device.close() } }
    do {
        let credentials = try options.user.map { user throws(StartupError) in try UserCredentials.resolve(user: user, group: options.group) }
        let probe = try SandboxProbe.fromEnvironment()
        let served = try make()
        devices = served.map(\.0)
        let notifier = try ServiceNotifier()
        let daemons = try served.map { device, _ in
            try Daemon(device: device, configuration: .init(pollMicroseconds: options.pollMicroseconds ?? identity.defaultPollMicroseconds),
                       logger: logger, onEvent: { notifier.handle($0, identity: identity) })
        }
        ShutdownSignals.install { for daemon in daemons { daemon.requestShutdown() } }
        let sandbox = Sandbox(mode: options.sandbox, credentials: credentials,
                              policy: SandboxPolicy.daemonRuntime.union(identity.sandbox), inherited: inherited)
        try sandbox.enter(logger: logger)
        probe?.run(logger: logger)
        // Every endpoint but the first on a thread of its own; when one ends, all do.
        let others = zip(daemons, served.map(\.1)).dropFirst().map { daemon, endpoint in
            PosixThread(name: "vhu-serve") {
                try? serve(daemon, endpoint, notifier: notifier, identity: identity)
                for daemon in daemons { daemon.requestShutdown() }
            }
        }
        try serve(daemons[0], served[0].1, notifier: notifier, identity: identity)
        for daemon in daemons { daemon.requestShutdown() }
        for thread in others { thread.join() }
        closeDevices()
        notifier.finish()
        exit(0)
    } catch {
        logger.critical("\(error)")
        closeDevices()
        exit(1)
    }
}

private func serve(_ daemon: Daemon, _ endpoint: ListenEndpoint, notifier: ServiceNotifier, identity: DaemonIdentity) throws {
    switch endpoint {
    case let .listener(listener):
        try daemon.serve(listener: listener)
    case let .connection(connection):
        notifier.handle(.listening("an inherited connected socket"), identity: identity)
        daemon.serve(connection: connection)
        notifier.handle(.stopping, identity: identity)
    }
}
