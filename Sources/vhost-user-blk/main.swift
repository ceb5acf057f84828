import ArgumentParser
import BlockDevice
import Logging
import VhostUserCLI
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-blk: a virtio block device for any vhost-user VMM.
struct BlockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-blk",
        abstract: "vhost-user backend for virtio-blk: serves a raw image file, a host block device, a Ceph RBD image or an NBD export.",
        discussion: """
            Serves one virtio-blk device to a VMM (QEMU's vhost-user-blk-pci, cloud-hypervisor, crosvm) over \
            a unix socket. Reads and writes go straight between guest memory and the disk through one io_uring \
            per queue (or a thread pool where io_uring is unavailable). DISCARD and WRITE_ZEROES punch holes or \
            zero ranges. When the image grows (e.g. after truncate), or on SIGHUP, the new capacity is pushed \
            to the guest. In-flight requests are recorded in the front-end's inflight region, so a daemon that \
            is killed and restarted on the same socket resubmits them. With --rbd the disk is a Ceph RBD image \
            (librbd, requests straight from guest memory; its exclusive lock keeps a second daemon from writing \
            to it), with --nbd an NBD export (libnbd, one connection per queue, reconnected when it drops). \
            See vhost-user-devices(7).
            """)

    static let identity = identity(sandbox: systemCalls)

    /// With `--rbd` or `--nbd` the sandbox also lets the client libraries reach the network. With
    /// `--rbd` the workers do not poll by default: a request takes hundreds of microseconds in the
    /// cluster, and a worker spinning for its completion only takes the CPU from librbd's threads
    /// (bench-blk: about 45 µs of CPU less per 4 KiB read at depth 1, 30 per 128 KiB read).
    static func identity(sandbox: SandboxPolicy, defaultPollMicroseconds: UInt64 = 32) -> DaemonIdentity {
        DaemonIdentity(name: "vhost-user-blk", type: "block", features: ["read-only", "blk-file"],
                       defaultPollMicroseconds: defaultPollMicroseconds, sandbox: sandbox)
    }

    /// Beyond the daemon runtime's: the I/O engines (io_uring; preadv/pwritev/pwritev2 with RWF_DSYNC
    /// on threads or inline; pread/pwrite through an aligned bounce buffer under O_DIRECT), FLUSH,
    /// DISCARD and WRITE_ZEROES on files (fallocate) and block devices (ioctl), and the size check.
    static let systemCalls = SandboxPolicy([
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        "preadv", "pwritev", "pwritev2", "pread64", "pwrite64", "fdatasync", "fallocate",
    ] as [SystemCallRule] + [BlockBackend.BLKGETSIZE64, BlockBackend.BLKDISCARD, BlockBackend.BLKZEROOUT].map {
        SystemCallRule("ioctl", where: .argument(1, equals: UInt32($0)))
    })

    /// With --rbd or --nbd: librbd/librados' and libnbd's threads' sockets to the cluster (TCP, IPv4 or
    /// IPv6) or the NBD server (TCP or unix), reconnects, and the pipes and epoll of librados' messenger.
    /// Only then: a daemon serving a file keeps no way to the network.
    static let networkStoreCalls: SandboxPolicy = [
        SystemCallRule("socket", where: .argument(0, equals: UInt32(AF_INET))),
        SystemCallRule("socket", where: .argument(0, equals: UInt32(AF_INET6))),
        "connect", "sendto", "recvfrom", "getsockname", "getpeername", "setsockopt",
        "epoll_create", "pipe2", "uname",
        // The NBD engine's timer for reconnect attempts and deadlines.
        "timerfd_create", "timerfd_settime",
        // librados' log and config files, read and repositioned by its threads (also under ThreadSanitizer).
        "lseek",
    ]

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The raw image file or block device to serve.", valueName: "path"))
    var blkFile: String?

    @Option(name: .long, help: ArgumentHelp("Serve a null disk of this size instead (e.g. 1G): reads return zeroes, writes are discarded.", valueName: "size"))
    var nullSize: ByteCount?

    @Option(name: .long, help: ArgumentHelp("Serve a Ceph RBD image instead (librbd); an image@snapshot is served read-only.", valueName: "pool/image[@snap]"))
    var rbd: RBDSpec?

    @Option(name: .long, help: ArgumentHelp("With --rbd: the cluster's ceph.conf (default: librados' search, /etc/ceph/ceph.conf).", valueName: "path"))
    var cephConf: String?

    @Option(name: .long, help: ArgumentHelp("With --rbd: the Ceph client name, without \"client.\" (default: admin).", valueName: "name"))
    var cephId: String?

    @Option(name: .long, help: ArgumentHelp("With --rbd: the keyring holding the client's key (default: the ceph.conf's).", valueName: "path"))
    var cephKeyring: String?

    @Option(name: .long, help: ArgumentHelp("With --rbd: fail an operation the cluster has not answered after this many seconds with IOERR (default: 60; 0: wait for the cluster for ever, and a daemon whose cluster is gone cannot stop).", valueName: "seconds"))
    var cephTimeout: Int?

    /// Bounds the wait of a queue that stops (disconnect, migration) for requests a dead cluster holds.
    static let defaultCephTimeout = 60

    @Flag(name: .long, help: "With --rbd: serve the image without taking its exclusive lock, even while another client holds it.")
    var force = false

    @Flag(name: .long, help: "With --rbd: hold the image's exclusive lock only while the front-end runs the queues, taking it from the daemon that held it when they start (live migration: start both daemons with it).")
    var lockHandover = false

    @Option(name: .long, help: ArgumentHelp("Serve an NBD export instead (libnbd): nbd://host[:port]/export or nbd+unix:///export?socket=path.", valueName: "uri"))
    var nbd: String?

    @Option(name: .long, help: ArgumentHelp("With --nbd: how long guest I/O waits for a lost connection to come back before it fails, and a stopping queue for a server that does not answer.", valueName: "seconds"))
    var nbdRetry: Int = 30

    @Flag(name: .long, help: "Give the guest a read-only disk.")
    var readOnly = false

    @Option(name: .long, help: ArgumentHelp("Disk serial number reported by GET_ID (up to 20 bytes).", valueName: "id"))
    var serial: String = ""

    @Option(name: .long, help: "Number of request queues.")
    var numQueues: Int = 1

    @Option(name: .long, help: ArgumentHelp("Worker threads serving the queues (default: one per queue); with fewer, queue i runs on worker i % N.", valueName: "N"))
    var workers: Int?

    @Option(name: .long, help: "Largest queue size the front-end may use (a power of two up to 32768).")
    var queueSize: Int = 256

    @Flag(name: .long, help: "Open the disk with O_DIRECT (bypass the host page cache).")
    var direct = false

    @Option(name: .long, help: ArgumentHelp("Logical block size the guest sees.", valueName: "bytes"))
    var logicalBlockSize: LogicalBlockSize = .b512

    @Option(name: .long, help: ArgumentHelp("Initial write cache mode (the guest may switch it).", valueName: "mode"))
    var writeCache: WriteCacheMode = .writeback

    @Option(name: .long, help: ArgumentHelp("How reads and writes reach the disk.", valueName: "engine"))
    var engine: IOEngineKind = .auto

    func validate() throws {
        let targets = [blkFile != nil, nullSize != nil, rbd != nil, nbd != nil].filter { $0 }.count
        guard targets == 1 || daemon.printCapabilities else {
            throw ValidationError("give exactly one of --blk-file PATH, --null-size SIZE, --rbd POOL/IMAGE and --nbd URI")
        }
        if rbd == nil && (cephConf != nil || cephId != nil || cephKeyring != nil || cephTimeout != nil || force || lockHandover) {
            throw ValidationError("--ceph-conf, --ceph-id, --ceph-keyring, --ceph-timeout, --force and --lock-handover go with --rbd")
        }
        if let cephTimeout, cephTimeout < 0 { throw ValidationError("--ceph-timeout must not be negative") }
        if nbdRetry < 0 { throw ValidationError("--nbd-retry must not be negative") }
    }

    func run() throws {
        let network = rbd != nil || nbd != nil
        let identity = network
            ? Self.identity(sandbox: Self.systemCalls.union(Self.networkStoreCalls), defaultPollMicroseconds: rbd != nil ? 0 : 32)
            : Self.identity
        runDaemon(identity, options: daemon) {
            // Before the network stores' libraries start their threads: only the watch thread takes SIGHUP.
            ResizeWatch.blockHangup()
            let backend = try BlockBackend(target: target, readOnly: readOnly, direct: direct, logicalBlockSize: logicalBlockSize.rawValue)
            var options = BlockDevice.Options()
            options.serial = serial
            options.queueCount = numQueues
            options.workers = workers
            options.queueSize = queueSize
            options.writeback = writeCache == .writeback
            options.engine = engine
            let device = try BlockDevice(backend: backend, options: options, logger: Logger(label: "vhost-user-blk"))
            if blkFile != nil || rbd != nil { ResizeWatch.start(device) }
            return device
        }
    }
}

/// Pushes a new capacity to the guest when the disk changes size: on SIGHUP, and by checking once a
/// second, on a thread of its own (no dispatch: its lazy threads and files do not fit the sandbox).
enum ResizeWatch {
    nonisolated(unsafe) private static var thread: PosixThread?

    /// Call it before the daemon starts any thread (first in `runDaemon`'s makeDevice): SIGHUP is
    /// blocked in every thread started afterwards, and only the watch thread takes it.
    static func blockHangup() {
        var hangup = sigset_t()
        sigemptyset(&hangup)
        sigaddset(&hangup, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &hangup, nil)
    }

    static func start(_ device: BlockDevice) {
        var hangup = sigset_t()
        sigemptyset(&hangup)
        sigaddset(&hangup, SIGHUP)
        thread = PosixThread {
            var second = timespec(tv_sec: 1, tv_nsec: 0)
            while true {
                _ = sigtimedwait(&hangup, nil, &second)
                _ = device.checkResize()
            }
        }
    }
}

extension BlockCommand {
    /// The disk `--blk-file`, `--null-size`, `--rbd` or `--nbd` names.
    var target: BlockTarget {
        if let blkFile { return .file(blkFile) }
        if let spec = rbd {
            var t = spec.target
            t.configFile = cephConf
            t.id = cephId
            t.keyring = cephKeyring
            t.force = force
            t.handover = lockHandover
            t.timeoutSeconds = cephTimeout == 0 ? nil : (cephTimeout ?? Self.defaultCephTimeout)
            return .rbd(t)
        }
        if let nbd {
            var t = NBDTarget(uri: nbd)
            t.retrySeconds = nbdRetry
            return .nbd(t)
        }
        return .null(size: nullSize!.bytes)
    }
}

/// `--rbd pool/image[@snapshot]`.
struct RBDSpec: ExpressibleByArgument {
    let target: RBDTarget
    init?(argument: String) {
        guard let t = RBDTarget(spec: argument) else { return nil }
        target = t
    }
}

/// `--write-cache`: whether the disk starts with its write cache on (writeback) or off (writethrough).
enum WriteCacheMode: String, CaseIterable, ExpressibleByArgument {
    case writeback
    case writethrough

    static var allValueDescriptions: [String: String] {
        [writeback.rawValue: "a write completes once the host has it; the guest's flushes make it durable",
         writethrough.rawValue: "a write completes once it is on the disk"]
    }
}

/// `--logical-block-size`: the block sizes the device offers.
enum LogicalBlockSize: Int, CaseIterable, ExpressibleByArgument {
    case b512 = 512
    case b4096 = 4096

    static var allValueDescriptions: [String: String] {
        ["512": "512-byte sectors, what most guests and images expect",
         "4096": "4 KiB blocks, as on 4K-native disks"]
    }
}

extension IOEngineKind: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [IOEngineKind.auto.rawValue: "inline for files in memory such as tmpfs, io_uring otherwise (threads where io_uring is refused)",
         IOEngineKind.inline.rawValue: "reads and writes on the queue's own thread, for files in memory",
         IOEngineKind.ioUring.rawValue: "one io_uring per queue; the daemon does not start where io_uring is refused",
         IOEngineKind.threads.rawValue: "preadv/pwritev on a small pool of threads per queue"]
    }
}

/// `--null-size`: `1G`, `512M`, `4096`, `64k`, a byte count with an optional binary suffix.
struct ByteCount: ExpressibleByArgument {
    let bytes: UInt64

    init?(argument text: String) {
        let units: [Character: UInt64] = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30, "G": 1 << 30, "t": 1 << 40, "T": 1 << 40]
        var digits = Substring(text)
        var scale: UInt64 = 1
        if let last = digits.last, let unit = units[last] { scale = unit; digits = digits.dropLast() }
        guard let n = UInt64(digits), n > 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow else { return nil }
        self.bytes = bytes
    }
}

BlockCommand.main()
