import ArgumentParser
import Logging
import VhostUserCLI
import VhostUserKit
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-vsock: virtio-vsock sockets between a guest and host programs (and other guests).
struct VsockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-vsock",
        abstract: "vhost-user backend for virtio-vsock: guest stream and seqpacket sockets to host unix sockets.",
        discussion: """
            Serves one virtio-vsock device (STREAM, SEQPACKET) for the guest with --guest-cid, in the hybrid \
            unix-socket convention of Firecracker and cloud-hypervisor. A guest connecting to the host (CID 2) \
            on port P reaches the unix listener PATH_P (SOCK_STREAM for a stream socket, SOCK_SEQPACKET for a \
            seqpacket one); if none listens there the guest's connect is refused. A host program reaches a \
            guest listener on port P by connecting to PATH (SOCK_STREAM) or PATH.seqpacket (SOCK_SEQPACKET), \
            sending "CONNECT P\\n" and reading "OK HOSTPORT\\n" (one message on PATH.seqpacket); the socket is \
            closed instead when the guest refuses. On PATH.seqpacket each message is one guest message (EOM); \
            guest EOR marks are not kept on the host side (unix sockets have none). Each connection buffers \
            at most --buffer-bytes of guest data for a slow host reader (the guest is throttled by credit), \
            and host data is read only as fast as the guest's credit allows. When a front-end connects again \
            (a VMM or daemon restart), the guest gets a transport reset and every host socket of the previous \
            connection is closed. Several VMs can share one daemon: each --vm (or line of --config FILE) \
            guest-cid=N,socket=PATH,uds-path=PATH[,group=NAME] gets its own vhost-user socket and host side, \
            and guests of the same group connect to each other by CID (VM to VM, through the daemon); then \
            --socket-path, --fd, socket activation and --guest-cid/--uds-path are not used. See \
            vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: "The guest's context ID (3 to 4294967294; required).")
    var guestCid: UInt64?

    @Option(name: .long, help: ArgumentHelp("The host side's unix socket path (required): PATH and PATH.seqpacket for host-initiated connections, PATH_PORT for guest-initiated ones.", valueName: "path"))
    var udsPath: String?

    @Option(name: .long, help: "Guest bytes buffered per connection for the host side (the credit the guest gets).")
    var bufferBytes: UInt32 = 1 << 20

    @Option(name: .long, help: "The most connections at once.")
    var maxConnections: Int = 4096

    @Flag(name: .long, help: "Do not offer SEQPACKET sockets.")
    var noSeqpacket = false

    @Option(name: .customLong("vm"), help: ArgumentHelp(
        "A VM of a multi-VM daemon: guest-cid=N,socket=PATH,uds-path=PATH[,group=NAME] (repeatable).", valueName: "spec"))
    var vms: [String] = []

    @Option(name: .long, help: ArgumentHelp("A file of VM specs as --vm takes them, one per line (# comments).", valueName: "path"))
    var config: String?

    func validate() throws {
        if daemon.printCapabilities { return }
        guard bufferBytes >= 4096, bufferBytes <= 64 << 20 else { throw ValidationError("--buffer-bytes: from 4096 to 64 MiB") }
        guard maxConnections >= 1, maxConnections <= 1 << 20 else { throw ValidationError("--max-connections: from 1 to 1048576") }
        if !vms.isEmpty || config != nil {
            guard guestCid == nil, udsPath == nil, daemon.socketPath == nil, daemon.fd == nil else {
                throw ValidationError("--vm and --config replace --guest-cid, --uds-path, --socket-path and --fd")
            }
            do { try VsockVMSpec.validate(try vmSpecs()) } catch { throw ValidationError("\(error)") }
            return
        }
        guard let guestCid, let udsPath else { throw ValidationError("--guest-cid and --uds-path are required") }
        guard VirtioVsock.isValidGuestCID(guestCid) else { throw ValidationError("--guest-cid: from 3 to 4294967294") }
        guard udsPath.utf8.count + 11 <= UnixListener.maxPathBytes else { throw ValidationError("--uds-path: too long for PATH_PORT unix socket paths") }
    }

    /// Beyond the daemon runtime's: the host sockets (connect, socketpair for guests of one group,
    /// send and receive without SIGPIPE, shutdown, fcntl for non-blocking accepted sockets).
    static let identity = DaemonIdentity(name: "vhost-user-vsock", type: "vsock", sandbox: [
        "connect", "socketpair", "sendto", "recvfrom", "sendmsg", "shutdown", "fcntl", "accept",
    ])

    /// The VMs of --vm and --config.
    func vmSpecs() throws -> [VsockVMSpec] {
        var specs = try vms.map { try VsockVMSpec.parse($0) }
        if let config { specs += try VsockVMSpec.load(path: config) }
        guard !specs.isEmpty else { throw ValidationError("--config \(config ?? ""): no VM") }
        return specs
    }

    func run() throws {
        var options = VsockDevice.Options()
        options.bufferBytes = bufferBytes
        options.maxConnections = maxConnections
        options.seqpacket = !noSeqpacket
        let logger = Logger(label: Self.identity.name)
        if !vms.isEmpty || config != nil {
            let specs = try vmSpecs()
            runDaemons(Self.identity, options: daemon) {
                raiseDescriptorLimit(for: maxConnections * specs.count)
                var hubs: [String: VsockHub] = [:]
                return try specs.map { spec in
                    let hub = spec.group.map { name in hubs[name] ?? { let h = VsockHub(); hubs[name] = h; return h }() }
                    let device = try VsockDevice(guestCID: spec.guestCID, host: HostSockets(path: spec.udsPath), hub: hub,
                                                 options: options, logger: logger)
                    return (spec.socket, device)
                }
            }
        }
        runDaemon(Self.identity, options: daemon) {
            raiseDescriptorLimit(for: maxConnections)
            let host = try HostSockets(path: udsPath ?? "")
            return try VsockDevice(guestCID: guestCid ?? 0, host: host, options: options, logger: logger)
        }
    }
}

/// Each connection holds a descriptor: lift the soft limit towards the hard one.
func raiseDescriptorLimit(for connections: Int) {
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    let wanted = rlim_t(connections * 2 + 64)
    if limit.rlim_cur < wanted {
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
}

VsockCommand.main()
