import ArgumentParser
import Logging

/// Options every vhost-user daemon has, following QEMU's "backend program conventions"
/// (docs/interop/vhost-user.rst).
public struct DaemonOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: ArgumentHelp("Create this unix socket and listen on it; the same socket serves every front-end reconnect.", valueName: "path"))
    public var socketPath: String?

    @Option(name: .long, help: ArgumentHelp("Use this inherited socket: a listening one is accepted on, a connected one is served once.", valueName: "fd"))
    public var fd: Int32?

    @Flag(name: .long, help: "Print the backend type and capabilities as JSON and exit.")
    public var printCapabilities = false

    @Option(name: .long, help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    public var logLevel: Logger.Level = .info

    @Option(name: .customLong("poll-us"), help: ArgumentHelp("Microseconds a queue worker keeps polling its ring before it sleeps (default: the daemon's own, 0 to never poll).", valueName: "us"))
    public var pollMicroseconds: UInt64?

    @Option(name: .long, help: ArgumentHelp("Once set up (device made, files opened, socket bound), switch to this user (a name or a uid); needs root. Without it the daemon keeps its user (under systemd, DynamicUser= picks one).", valueName: "user"))
    public var user: String?

    @Option(name: .long, help: ArgumentHelp("With --user, switch to this group (a name or a gid) instead of the user's primary group.", valueName: "group"))
    public var group: String?

    @Option(name: .long, help: ArgumentHelp("How the daemon confines itself once set up (device made, files opened, socket bound).", valueName: "mode"))
    public var sandbox: SandboxMode = .seccomp

    public init() {}

    public func validate() throws {
        if socketPath != nil && fd != nil { throw ValidationError("--socket-path and --fd cannot be used together") }
        if let fd, fd < 0 { throw ValidationError("--fd must not be negative") }
        if group != nil && user == nil { throw ValidationError("--group needs --user") }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
