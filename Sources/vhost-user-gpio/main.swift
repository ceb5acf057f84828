import ArgumentParser
import GPIODevice
import VhostUserCLI

/// vhost-user-gpio: a virtio GPIO controller for any vhost-user VMM.
struct GPIOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-gpio",
        abstract: "vhost-user backend for virtio-gpio: a host GPIO chip or a simulated one for the guest.",
        discussion: """
            Serves one virtio-gpio device (with interrupts, VIRTIO_GPIO_F_IRQ) to a VMM (QEMU's \
            vhost-user-gpio-pci, cloud-hypervisor, crosvm) over a unix socket. With --chip, the guest \
            drives the lines of a Linux GPIO chip through its character device (one chip per socket; \
            lines the host uses are refused; level interrupts are emulated from both-edge events and \
            the line's value). Without it, the lines are simulated: --lines of them, named by \
            --line-names, --loopback pairs wired together (an output drives its partner's input and \
            may raise its interrupt), --busy lines refused; a host script drives inputs through \
            --control-socket with one command per line: `set LINE 0|1`, `get LINE`, `direction LINE` \
            (LINE is a number or a name; the socket is served while the guest's driver runs). See \
            vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("Pass this Linux GPIO chip through.", valueName: "/dev/gpiochipN"))
    var chip: String?

    @Option(name: .long, help: "Simulated chip: the number of lines.")
    var lines: Int = 8

    @Option(name: .long, help: ArgumentHelp("Simulated chip: the lines' names, in order (comma-separated).", valueName: "name,..."))
    var lineNames: String?

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Simulated chip: wire two lines together (repeatable, or comma-separated).", valueName: "A-B"))
    var loopback: [String] = []

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Simulated chip: a line the host keeps; every request on it fails (repeatable).", valueName: "line"))
    var busy: [Int] = []

    @Option(name: .long, help: ArgumentHelp("Simulated chip: a unix socket for driving its inputs.", valueName: "path"))
    var controlSocket: String?

    @Flag(name: .long, help: "Do not offer interrupts (VIRTIO_GPIO_F_IRQ).")
    var noInterrupts = false

    func validate() throws {
        if chip != nil, lineNames != nil || !loopback.isEmpty || !busy.isEmpty || controlSocket != nil {
            throw ValidationError("--chip passes a real chip through: --line-names, --loopback, --busy and --control-socket describe a simulated one")
        }
        _ = try layout()
    }

    func layout() throws -> SimulatedChipLayout {
        do {
            let pairs = try loopback.flatMap { $0.split(separator: ",") }.map { try SimulatedChipLayout.parsePair(String($0)) }
            let names = lineNames.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
            return try SimulatedChipLayout(lineCount: lines, names: names, loopbacks: pairs, busy: Set(busy))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// Beyond the daemon runtime's: the GPIO character device's ioctls (type 0xB4) and the replies on
    /// the control socket.
    static let identity = DaemonIdentity(
        name: "vhost-user-gpio", type: "gpio",
        sandbox: [SystemCallRule("ioctl", where: .argument(1, masked: 0xff00, equals: 0xb400)), "sendto"])

    func run() throws {
        let layout = try layout()
        runDaemon(Self.identity, options: daemon) {
            let gpioChip: any GPIOChip = if let chip {
                try PassthroughChip(path: chip)
            } else {
                try SimulatedChip(layout: layout, controlSocketPath: controlSocket)
            }
            return GPIODevice(chip: gpioChip, interrupts: !noInterrupts)
        }
    }
}

GPIOCommand.main()
