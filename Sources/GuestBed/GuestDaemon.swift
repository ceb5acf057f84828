// The daemons a caller of the bed attaches to the guest.

/// A vhost-user backend that one QEMU device is attached to.
public struct GuestDaemon: Sendable {
    /// How the backend process is started.
    public enum Launch: Sendable {
        /// A product of this package, located in `GuestTestBed.binaryDirectory`; the bed adds
        /// `--socket-path SOCKET` before the arguments.
        case product(String)
        /// A full command line; each argument's `{socket}` is replaced by the socket path.
        case command([String])
        /// A backend that is already listening on this socket, started by someone else (e.g. a
        /// systemd socket unit): the bed starts and stops nothing, QEMU just connects to it.
        case listening(socket: String)
    }

    public var launch: Launch
    /// Arguments after `--socket-path SOCKET` (only for `.product`).
    public var arguments: [String] = []
    /// The QEMU device, e.g. `vhost-user-rng-pci`.
    public var qemuDevice: String
    /// Appended to the `-device` option, e.g. `,num-queues=2`.
    public var qemuDeviceOptions: String = ""
    /// Appended to the `-chardev socket` option, e.g. `,reconnect-ms=500` so that QEMU reconnects
    /// to a daemon that `GuestControl.restartDaemon` restarts.
    public var qemuChardevOptions: String = ""
    /// Whether QEMU starts without this daemon's device: the bed starts the daemon and gives the
    /// guest an empty PCIe root port for it, and the host action plugs it in with
    /// `GuestControl.hotplugDaemon` (a device whose realize needs a connected chardev can so use a
    /// `reconnect-ms` one, which connects only after QEMU has started).
    public var hotplugged = false
    /// The line on the daemon's stderr (or stdout) that says it is ready; `{socket}` is replaced.
    public var readinessLine: String = "listening on {socket}"

    /// A daemon of this package: `executable --socket-path SOCKET arguments...`.
    public init(
        executable: String, arguments: [String] = [], qemuDevice: String, qemuDeviceOptions: String = "",
        qemuChardevOptions: String = ""
    ) {
        self.launch = .product(executable)
        self.arguments = arguments
        self.qemuDevice = qemuDevice
        self.qemuDeviceOptions = qemuDeviceOptions
        self.qemuChardevOptions = qemuChardevOptions
    }

    /// A backend listening on `socket` already, e.g. through systemd socket activation.
    public init(listeningOn socket: String, qemuDevice: String, qemuDeviceOptions: String = "", qemuChardevOptions: String = "") {
        self.launch = .listening(socket: socket)
        self.qemuDevice = qemuDevice
        self.qemuDeviceOptions = qemuDeviceOptions
        self.qemuChardevOptions = qemuChardevOptions
    }

    /// Any backend, started with a full command line, ready when it prints `readinessLine`.
    public init(
        command: [String], readinessLine: String, qemuDevice: String, qemuDeviceOptions: String = "",
        qemuChardevOptions: String = ""
    ) {
        self.launch = .command(command)
        self.readinessLine = readinessLine
        self.qemuDevice = qemuDevice
        self.qemuDeviceOptions = qemuDeviceOptions
        self.qemuChardevOptions = qemuChardevOptions
    }
}
