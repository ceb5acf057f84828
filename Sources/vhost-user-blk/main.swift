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
        abstract: "vhost-user backend for virtio-blk: serves a raw image file or a host block device.",
        discussion: """
            Serves one virtio-blk device to a VMM (QEMU's vhost-user-blk-pci, cloud-hypervisor, crosvm) over \
            a unix socket. Reads and writes go straight between guest memory and the disk through one io_uring \
            per queue (or a thread pool where io_uring is unavailable). DISCARD and WRITE_ZEROES punch holes or \
            zero ranges. When the image grows (e.g. after truncate), or on SIGHUP, the new capacity is pushed \
            to the guest. In-flight requests are recorded in the front-end's inflight region, so a daemon that \
            is killed and restarted on the same socket resubmits them. See vhost-user-devices(7).
            """)

    static let identity = DaemonIdentity(name: "vhost-user-blk", type: "block", features: ["read-only", "blk-file"],
                                         defaultPollMicroseconds: 32, sandbox: systemCalls)

    /// Beyond the daemon runtime's: the I/O engines (io_uring; preadv/pwritev/pwritev2 with RWF_DSYNC
    /// on threads or inline; pread/pwrite through an aligned bounce buffer under O_DIRECT), FLUSH,
    /// DISCARD and WRITE_ZEROES on files (fallocate) and block devices (ioctl), and the size check.
    static let systemCalls = SandboxPolicy([
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        "preadv", "pwritev", "pwritev2", "pread64", "pwrite64", "fdatasync", "fallocate",
    ] as [SystemCallRule] + [BlockBackend.BLKGETSIZE64, BlockBackend.BLKDISCARD, BlockBackend.BLKZEROOUT].map {
        SystemCallRule("ioctl", where: .argument(1, equals: UInt32($0)))
    })

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The raw image file or block device to serve.", valueName: "path"))
    var blkFile: String?

    @Option(name: .long, help: ArgumentHelp("Serve a null disk of this size instead (e.g. 1G): reads return zeroes, writes are discarded.", valueName: "size"))
    var nullSize: ByteCount?

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
        guard (blkFile == nil) != (nullSize == nil) || daemon.printCapabilities else {
            throw ValidationError("give exactly one of --blk-file PATH and --null-size SIZE")
        }
    }

    func run() throws {
        runDaemon(Self.identity, options: daemon) {
            let target: BlockTarget = blkFile.map { .file($0) } ?? .null(size: nullSize!.bytes)
            let backend = try BlockBackend(target: target, readOnly: readOnly, direct: direct, logicalBlockSize: logicalBlockSize.rawValue)
            var options = BlockDevice.Options()
            options.serial = serial
            options.queueCount = numQueues
            options.workers = workers
            options.queueSize = queueSize
            options.writeback = writeCache == .writeback
            options.engine = engine
            let device = try BlockDevice(backend: backend, options: options, logger: Logger(label: "vhost-user-blk"))
            if blkFile != nil { ResizeWatch.start(device) }
            return device
        }
    }
}

/// Pushes a new capacity to the guest when the disk changes size: on SIGHUP, and by checking once a
/// second, on a thread of its own (no dispatch: its lazy threads and files do not fit the sandbox).
enum ResizeWatch {
    nonisolated(unsafe) private static var thread: PosixThread?

    /// Call it before the daemon starts any thread (in `runDaemon`'s makeDevice): SIGHUP is blocked
    /// here, so in every thread started afterwards, and only the watch thread takes it.
    static func start(_ device: BlockDevice) {
        var hangup = sigset_t()
        sigemptyset(&hangup)
        sigaddset(&hangup, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &hangup, nil)
        thread = PosixThread {
            var second = timespec(tv_sec: 1, tv_nsec: 0)
            while true {
                _ = sigtimedwait(&hangup, nil, &second)
                _ = device.checkResize()
            }
        }
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
