import ArgumentParser
import RNGDevice
import VhostUserCLI

/// vhost-user-rng: a virtio entropy device for any vhost-user VMM.
struct RNGCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-rng",
        abstract: "vhost-user backend for virtio-rng: feeds guest entropy from a host source.",
        discussion: """
            Serves one virtio-rng device to a VMM (QEMU's vhost-user-rng-pci, cloud-hypervisor, crosvm) over \
            a unix socket. Each request buffer the guest driver offers is filled straight from the source: \
            /dev/urandom by default, any readable file or device with --source, or getrandom(2). With \
            --max-bytes, at most that many bytes are served per --period-ms; requests beyond the budget \
            wait for the next period. The daemon keeps its socket across VMM reconnects and exits on \
            SIGTERM or SIGINT. See vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: "Entropy source file or device.")
    var source: String = "/dev/urandom"

    @Flag(name: .long, help: "Use getrandom(2) instead of a source file.")
    var getrandom = false

    @Option(name: .long, help: "Rate limit: at most this many bytes per period (0 = unlimited).")
    var maxBytes: Int = 0

    @Option(name: .customLong("period-ms"), help: "Rate-limit period in milliseconds.")
    var periodMilliseconds: Int = 1000

    func validate() throws {
        guard maxBytes >= 0 else { throw ValidationError("--max-bytes must not be negative") }
        guard periodMilliseconds > 0 else { throw ValidationError("--period-ms must be positive") }
    }

    /// Beyond the daemon runtime's: reading the source file, or getrandom(2).
    static let identity = DaemonIdentity(name: "vhost-user-rng", type: "rng", sandbox: ["read", "getrandom"])

    func run() throws {
        let limit = maxBytes > 0 ? RateLimit(maxBytes: maxBytes, periodMilliseconds: periodMilliseconds) : nil
        runDaemon(Self.identity, options: daemon) {
            try RNGDevice(source: getrandom ? .getrandom : .file(source), rateLimit: limit)
        }
    }
}

RNGCommand.main()
