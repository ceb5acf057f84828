import ArgumentParser
import InputDevice
import VhostUserCLI
import VhostUserKit

/// vhost-user-input: a virtio input device for any vhost-user VMM.
struct InputCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-input",
        abstract: "vhost-user backend for virtio-input: a host evdev device or a synthetic keyboard, mouse, tablet or touchscreen.",
        discussion: """
            Serves one virtio-input device to a VMM (QEMU's vhost-user-input-pci, cloud-hypervisor, crosvm) over \
            a unix socket. With --evdev-path the device passes a host /dev/input/eventN through: it is grabbed \
            (unless --no-grab) so the host no longer sees its events, the guest gets its name, ids, properties, \
            event bits and axis ranges, its events in whole SYN_REPORT batches, and LED and force-feedback \
            events the guest sends are written back to it. With --kind the device is synthetic, fed through \
            --control-socket by a line protocol: key NAME VALUE, btn NAME VALUE, rel DX DY, wheel N, abs X Y, \
            touch X Y, untouch, event TYPE CODE VALUE, sync, type "TEXT", status; each line is answered with \
            ok or error REASON, and events reach the guest at sync. Events wait, up to --buffer-events, while \
            the guest offers no buffers; beyond that the oldest whole batches are dropped (logged). See \
            vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: "Pass this host evdev device through (/dev/input/eventN).")
    var evdevPath: String?

    @Flag(name: .long, help: "With --evdev-path: do not grab the device (the host keeps receiving its events too).")
    var noGrab = false

    @Option(name: .long, help: "A synthetic device: keyboard, mouse, tablet or touch.")
    var kind: SyntheticKind?

    @Option(name: .long, help: "The device name the guest sees (default: the evdev device's, or \"vhost-user KIND\").")
    var name: String?

    @Option(name: .long, help: "With --kind: the unix socket a script sends control lines to.")
    var controlSocket: String?

    @Option(name: .long, help: "Events held while the guest offers no buffers (then the oldest batches are dropped).")
    var bufferEvents: Int = InputDevice.defaultBufferEvents

    func validate() throws {
        guard (evdevPath == nil) != (kind == nil) || daemon.printCapabilities else {
            throw ValidationError("give exactly one of --evdev-path and --kind")
        }
        if noGrab && evdevPath == nil { throw ValidationError("--no-grab goes with --evdev-path") }
        if controlSocket != nil && kind == nil { throw ValidationError("--control-socket goes with --kind") }
        guard bufferEvents >= 2 * InputDevice.defaultMaxBatch else {
            throw ValidationError("--buffer-events must be at least \(2 * InputDevice.defaultMaxBatch) (two of the longest batches)")
        }
    }

    /// Beyond the daemon runtime's: the control socket's clients (recv and send on a stream socket).
    static let identity = DaemonIdentity(name: "vhost-user-input", type: "input", features: ["evdev-path", "no-grab"],
                                         sandbox: ["recvfrom", "sendto"])

    func run() throws {
        runDaemon(Self.identity, options: daemon) {
            if let evdevPath {
                let node = try EvdevNode(path: evdevPath)
                var description = try InputDeviceDescription(querying: node)
                if let name { description.name = name }
                if !noGrab { try node.grab() }
                return InputDevice(description: description, source: .evdev(node.descriptor), bufferEvents: bufferEvents)
            }
            let description = kind!.description(name: name)
            let source: InputDevice.Source = try controlSocket.map { .control(ControlServer(listener: try UnixListener(path: $0), description: description)) } ?? .none
            return InputDevice(description: description, source: source, bufferEvents: bufferEvents)
        }
    }
}

extension SyntheticKind: ExpressibleByArgument {}

InputCommand.main()
