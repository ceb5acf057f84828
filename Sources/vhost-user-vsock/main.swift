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
            connection is closed. See vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: "The guest's context ID (3 to 4294967294; required).")
    var guestCid: UInt64?

    @Option(name: .long, help: ArgumentHelp("The host side's unix socket path (required): PATH and PATH.seqpacket for host-initiated connections, PATH_PORT for guest-initiated ones.", valueName: "path"))
    var udsPath: String?

    @Option(name: .long, help: "Guest bytes buffered per connection for the host side (the credit the guest gets).")
    var bufferBytes: UInt32 = 256 << 10

    @Option(name: .long, help: "The most connections at once.")
    var maxConnections: Int = 4096

    @Flag(name: .long, help: "Do not offer SEQPACKET sockets.")
    var noSeqpacket = false

    func validate() throws {
        if daemon.printCapabilities { return }
        guard let guestCid, let udsPath else { throw ValidationError("--guest-cid and --uds-path are required") }
        guard VirtioVsock.isValidGuestCID(guestCid) else { throw ValidationError("--guest-cid: from 3 to 4294967294") }
        guard bufferBytes >= 4096, bufferBytes <= 64 << 20 else { throw ValidationError("--buffer-bytes: from 4096 to 64 MiB") }
        guard maxConnections >= 1, maxConnections <= 1 << 20 else { throw ValidationError("--max-connections: from 1 to 1048576") }
        guard udsPath.utf8.count + 11 <= UnixListener.maxPathBytes else { throw ValidationError("--uds-path: too long for PATH_PORT unix socket paths") }
    }

    /// Beyond the daemon runtime's: the host sockets (connect, socketpair for guests of one group,
    /// send and receive without SIGPIPE, shutdown, fcntl for non-blocking accepted sockets).
    static let identity = DaemonIdentity(name: "vhost-user-vsock", type: "vsock", sandbox: [
        "connect", "socketpair", "sendto", "recvfrom", "sendmsg", "shutdown", "fcntl", "accept",
    ])

    func run() throws {
        var options = VsockDevice.Options()
        options.bufferBytes = bufferBytes
        options.maxConnections = maxConnections
        options.seqpacket = !noSeqpacket
        let logger = Logger(label: Self.identity.name)
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
