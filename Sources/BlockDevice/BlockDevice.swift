import Logging
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// virtio-blk (virtio 1.2, 5.2) over a raw image, a host block device, a Ceph RBD image, an NBD export
/// or the null target.
public final class BlockDevice: VhostUserDevice {
    public struct Options: Sendable {
        public var serial: String = ""
        public var queueCount: Int = 1
        /// Worker threads for the queues (nil: one per queue). Fewer workers than queues put several
        /// queues on one worker, queue i on worker i % workers: less switching when queues outnumber cores.
        public var workers: Int?
        public var queueSize: Int = 256
        public var engine: IOEngineKind = .auto
        /// The initial write cache mode; the guest may change it when CONFIG_WCE is negotiated.
        public var writeback: Bool = true
        public init() {}
    }

    public let backend: BlockBackend
    public let options: Options
    let serialBytes: [UInt8]
    let segMax: UInt32
    /// Data segments a request may have and still be served (more than advertised, for front-ends
    /// with bigger rings that ignore seg_max).
    let acceptedSegments: Int
    /// The largest data segment the device advertises (size_max).
    let sizeMax: UInt32 = 1 << 20
    /// The most data bytes one request may move: every accepted segment at its advertised maximum.
    /// Bounds the work (and, with --direct, the bounce buffer) one request can ask for; anything larger
    /// gets IOERR whatever the front-end's segments add up to.
    var maxTransferBytes: Int { acceptedSegments * Int(sizeMax) }
    let maxRanges: UInt32 = 32
    let maxDiscardSectors: UInt32 = 1 << 22
    private let writebackFlag: Atomic<Bool>
    private let backendChannel = Locked<BackendChannel?>(nil)
    private let logger: Logger

    public init(backend: BlockBackend, options: Options = .init(), logger: Logger = Logger(label: "vhost-user-blk")) throws(BlockBackendError) {
        guard (1...64).contains(options.queueCount) else { throw BlockBackendError("--num-queues must be 1 to 64") }
        if let workers = options.workers, !(1...options.queueCount).contains(workers) {
            throw BlockBackendError("--workers must be 1 to --num-queues (\(options.queueCount))")
        }
        guard SplitRingLayout.isValid(size: options.queueSize) else {
            throw BlockBackendError("--queue-size must be a power of two from 1 to 32768")
        }
        guard options.serial.utf8.count <= VirtioBlock.idLength else {
            throw BlockBackendError("--serial may have at most \(VirtioBlock.idLength) bytes")
        }
        // A flush on one NBD connection covers the writes of another only on a multi-conn export.
        if let nbd = backend.store as? NBDStore, !nbd.canMultiConnection, options.queueCount > 1 {
            throw BlockBackendError("\(nbd.name) does not allow several connections (no multi-conn): use --num-queues 1")
        }
        // Asked for by name, io_uring must work now: failing at start-up beats a silent fallback.
        if options.engine == .ioUring && URingEngine(depth: 8) == nil {
            throw BlockBackendError("--engine io_uring: io_uring is unavailable (\(SystemError.describe(errno))); use --engine threads")
        }
        self.backend = backend
        self.options = options
        self.logger = logger
        serialBytes = Array(options.serial.utf8) + [UInt8](repeating: 0, count: VirtioBlock.idLength - options.serial.utf8.count)
        // Two descriptors of every chain are the header and the status byte. The front-end reads the
        // config (GET_CONFIG) before it says how big its rings are, and Linux fills a request's indirect
        // table up to seg_max + 2 descriptors, which must not exceed the ring size (virtio 1.2, 2.7.5.3.1):
        // assume no more than QEMU's default queue-size of 128, as qemu-storage-daemon does (126).
        segMax = UInt32(max(1, min(options.queueSize, 128) - 2))
        acceptedSegments = max(Int(segMax), min(options.queueSize - 2, 254))
        writebackFlag = Atomic(options.writeback)
    }

    public var virtioDeviceID: UInt32 { VirtioBlock.deviceID }
    public var queueCount: Int { options.queueCount }
    public var maxQueueSize: Int { options.queueSize }
    public var queueGroups: [[Int]] {
        let workers = options.workers ?? options.queueCount
        return (0..<workers).map { Array(stride(from: $0, to: options.queueCount, by: workers)) }
    }
    public var extraProtocolFeatures: ProtocolFeatures { [.inflightShmfd] }
    public var configSize: Int { VirtioBlock.ConfigOffset.end }
    /// A request the queue cannot even parse has no status byte to write: returning it with length 0
    /// would leave the guest reading a stale status (often "OK"), so the queue stops instead.
    public var malformedChainPolicy: MalformedChainPolicy { .stopQueue }

    public var deviceFeatures: UInt64 {
        typealias F = VirtioBlock.Feature
        var f = F.sizeMax | F.segMax | F.blockSize | F.topology | F.flush | F.configWCE | F.multiQueue
        if backend.readOnly {
            f |= F.readOnly
        } else {
            if backend.canDiscard { f |= F.discard }
            if backend.canWriteZeroes { f |= F.writeZeroes }
        }
        return f
    }

    /// Whether the write cache is on (writeback) or off (writethrough).
    var writeback: Bool { writebackFlag.load(ordering: .relaxed) }

    var config: BlockConfig {
        BlockConfig(capacitySectors: backend.sizeBytes / UInt64(VirtioBlock.sectorSize), sizeMax: sizeMax, segMax: segMax,
                    blockSize: UInt32(backend.logicalBlockSize), writeback: writeback, numQueues: UInt16(options.queueCount),
                    maxDiscardSectors: maxDiscardSectors, maxRanges: maxRanges)
    }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        Array(config.encoded()[offset..<offset + count])
    }

    /// Only the writeback byte is writable (CONFIG_WCE).
    public func writeConfig(offset: Int, bytes: [UInt8]) throws {
        guard offset == VirtioBlock.ConfigOffset.writeback, bytes.count == 1, bytes[0] <= 1 else { throw DeviceError.readOnlyConfig }
        writebackFlag.store(bytes[0] == 1, ordering: .relaxed)
        logger.info("guest set the write cache to \(bytes[0] == 1 ? "writeback" : "writethrough")")
    }

    public func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler {
        let (engine, kind) = makeIOEngine(options.engine, depth: options.queueSize, backend: backend)
        if options.engine == .ioUring && kind != .ioUring {
            logger.warning("queue \(index): io_uring is unavailable; using the thread-pool engine")
        }
        if engine is FailingEngine {
            let reason = backend.store?.engineFailure.map { ": \($0)" } ?? ""
            logger.error("queue \(index): no engine\(reason); its requests fail with IOERR")
        }
        logger.debug("queue \(index): \(kind.rawValue) engine")
        return BlockQueue(device: self, engine: engine, features: features, logger: logger)
    }

    public func backendChannelChanged(_ channel: BackendChannel?) { backendChannel.withLock { $0 = channel } }

    /// The front-end disconnected or reset the device (the queues have stopped and their I/O finished):
    /// make every acknowledged write stable, whatever the write cache mode was.
    public func reset() {
        guard !backend.readOnly else { return }
        let e = backend.flushAll()
        if e != 0 { logger.error("flush on disconnect failed: \(SystemError.describe(e))") }
    }

    /// The daemon exits: a network store lets go of its connection (an RBD image's exclusive lock at
    /// once, so the next daemon on the image need not wait for the cluster to time this one out).
    public func close() { backend.close() }

    /// Re-reads the disk size; when it changed, tells the front-end so the guest sees the new capacity
    /// without a reboot. Returns the new size when it changed.
    @discardableResult
    public func checkResize() -> UInt64? {
        guard backend.refreshSize() else { return nil }
        let size = backend.sizeBytes
        logger.info("disk size is now \(size) bytes; notifying the front-end")
        // Send outside the lock: the control thread takes it when the channel changes, and must never
        // wait for a front-end that does not read its back-end channel.
        let channel = backendChannel.withLock { $0 }
        do {
            try channel?.configChanged()
        } catch {
            logger.error("cannot send the config change: \(error)")
        }
        return size
    }
}
