import ArgumentParser
import ConsoleDevice
import Logging
import VhostUserCLI
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-console: a virtio console with named ports for any vhost-user VMM.
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-console",
        abstract: "vhost-user backend for virtio-console: a guest console and named ports on host terminals, ptys, sockets and files.",
        discussion: """
            Serves one virtio console (SIZE, MULTIPORT, EMERG_WRITE) to a VMM over a unix socket. Port 0 is \
            the guest's console (hvc0); each further --port appears in the guest as /dev/virtio-ports/NAME. \
            Each port has its own host side: stdio (the daemon's terminal, raw while it runs and restored on \
            exit), pty (a new pseudo-terminal whose path is logged, optionally symlinked with link=PATH), \
            unix:PATH or tcp:HOST:PORT (listening; one client at a time attaches, others wait; tcp listens \
            on 127.0.0.1 unless HOST says otherwise), file:PATH (an append-only log of guest output). \
            Without --port, port 0 is stdio. The console follows the window size of a stdio terminal \
            (SIGWINCH) or a pty; for other host sides, --resize-socket takes lines "resize COLS ROWS". \
            Guest output waits in a buffer of --buffer-bytes per port while the host does not read it; \
            when it is full the guest waits, except on the console port with no client attached, which \
            keeps the newest bytes and logs that it drops the rest. Host input is read only as fast as \
            the guest takes it. See vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "A port: name=NAME,backend=stdio|pty|unix:PATH|tcp:HOST:PORT|file:PATH[,link=PATH] (repeatable; the first is port 0, the console).",
        valueName: "spec"))
    var ports: [String] = []

    @Option(name: .long, help: "Guest output held per port while the host does not read it.")
    var bufferBytes: Int = 64 << 10

    @Option(name: .long, help: "max_nr_ports: ports the guest may see (default: the number of --port).")
    var maxPorts: Int?

    @Option(name: .long, help: ArgumentHelp("A unix socket taking \"resize COLS ROWS\" lines for the console's size.", valueName: "path"))
    var resizeSocket: String?

    @Option(name: .long, help: "Console columns until a terminal or resize request says otherwise.")
    var cols: UInt16 = 80

    @Option(name: .long, help: "Console rows until a terminal or resize request says otherwise.")
    var rows: UInt16 = 24

    func validate() throws {
        guard bufferBytes >= 4096, bufferBytes <= 64 << 20 else { throw ValidationError("--buffer-bytes: from 4096 to 64 MiB") }
        guard cols > 0, rows > 0 else { throw ValidationError("--cols and --rows must be positive") }
        for spec in ports {
            do { _ = try PortSpec.parse(spec) } catch { throw ValidationError("\(error)") }
        }
    }

    /// Beyond the daemon runtime's: the ports' sockets (accept4 is the runtime's; send and receive
    /// without SIGPIPE), and the terminal's size and mode (TIOCGWINSZ; TCSETS to restore it, which
    /// glibc's tcsetattr follows with TCGETS to check).
    static let identity = DaemonIdentity(name: "vhost-user-console", type: "console", sandbox: [
        "sendto", "recvfrom",
        SystemCallRule("ioctl", where: .argument(1, equals: UInt32(TIOCGWINSZ))),
        SystemCallRule("ioctl", where: .argument(1, equals: UInt32(TCSETS))),
        SystemCallRule("ioctl", where: .argument(1, equals: UInt32(TCGETS))),
    ])

    func run() throws {
        let specs = try ports.isEmpty ? [PortSpec(name: "", backend: .stdio)] : ports.map { try PortSpec.parse($0) }
        var options = ConsoleDevice.Options()
        options.bufferBytes = bufferBytes
        options.maxPorts = maxPorts
        options.initialSize = ConsoleSize(cols: cols, rows: rows)
        let logger = Logger(label: Self.identity.name)
        runDaemon(Self.identity, options: daemon) {
            let opened = try specs.map { spec in
                let endpoint = try HostEndpoint.open(spec.backend)
                if let path = endpoint.ptyPath { logger.notice("port \(spec.name.isEmpty ? "0" : spec.name): pty \(path)") }
                return ConsoleDevice.Port(name: spec.name, endpoint: endpoint)
            }
            let control = try resizeSocket.map { path in try UnixListener(path: path).socket }
            return try ConsoleDevice(ports: opened, options: options, resizeControl: control, logger: logger)
        }
    }
}

ConsoleCommand.main()
