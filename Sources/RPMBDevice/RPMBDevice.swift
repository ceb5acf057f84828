import Logging
import VhostUserKit

/// virtio-rpmb (virtio 1.2, 5.12): a replay-protected memory block on one request queue, its state in a
/// crash-consistent image (`RPMBImage`).
public final class RPMBDevice: VhostUserDevice {
    public static let virtioID: UInt32 = 28
    /// struct virtio_rpmb_config: capacity (128 KiB units), max_wr_cnt, max_rd_cnt.
    public static let configSize = 3

    /// Blocks per request the device accepts and advertises (max_wr_cnt, max_rd_cnt: 1...255).
    public struct Limits: Sendable {
        public var maxWriteBlocks: Int
        public var maxReadBlocks: Int
        public init(maxWriteBlocks: Int = 16, maxReadBlocks: Int = 32) {
            self.maxWriteBlocks = maxWriteBlocks
            self.maxReadBlocks = maxReadBlocks
        }
    }

    public let capacityUnits: Int
    public let limits: Limits
    /// The image and the request logic: one queue serves them, but each run of the queue (after a
    /// reconnect) makes a new handler, so they live here, behind a lock.
    let processor: Locked<RPMBProcessor>
    private let logger: Logger

    public init(image: RPMBImage, limits: Limits = Limits(), logger: Logger = Logger(label: "vhost-user-rpmb")) throws(RPMBImageError) {
        guard (1...RPMBImage.maxBlocksPerWrite).contains(limits.maxWriteBlocks) else {
            throw RPMBImageError("--max-write-blocks must be 1 to \(RPMBImage.maxBlocksPerWrite)")
        }
        guard (1...255).contains(limits.maxReadBlocks) else { throw RPMBImageError("--max-read-blocks must be 1 to 255") }
        capacityUnits = image.capacityUnits
        self.limits = limits
        self.logger = logger
        processor = Locked(RPMBProcessor(image: image, maxWriteBlocks: limits.maxWriteBlocks,
                                         maxReadBlocks: limits.maxReadBlocks, logger: logger))
    }

    public var virtioDeviceID: UInt32 { Self.virtioID }
    public var deviceFeatures: UInt64 { 0 }
    public var queueCount: Int { 1 }
    public var maxQueueSize: Int { 1024 }
    public var configSize: Int { Self.configSize }

    public var config: [UInt8] { [UInt8(capacityUnits), UInt8(limits.maxWriteBlocks), UInt8(limits.maxReadBlocks)] }

    /// The config bytes the front-end asks for (the kit checked the range); logged at debug level, as
    /// a driverless guest's reads of the config are all a VMM may ever send.
    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        logger.debug("config read: \(count) bytes at \(offset)")
        return Array(config[offset..<offset + count])
    }

    public func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler {
        RPMBRequestQueue(device: self)
    }

    /// Runs `body` on the device's request logic and image (tests, the benchmark).
    public func withProcessor<R>(_ body: (RPMBProcessor) throws -> R) rethrows -> R {
        try processor.withLock { try body($0) }
    }
}

/// Serves the request queue: copies each chain's request frames out of guest memory, runs them, and
/// copies the response frames back.
final class RPMBRequestQueue: QueueHandler {
    private let device: RPMBDevice
    init(device: RPMBDevice) { self.device = device }

    func process(_ queue: Virtqueue) -> ProcessResult {
        device.processor.withLock { processor in
            while let chain = queue.nextChain() {
                queue.complete(chain, written: serve(chain, processor))
            }
        }
        return .done
    }

    /// Serves one chain; returns the bytes written into it.
    private func serve(_ chain: DescriptorChain, _ processor: RPMBProcessor) -> Int {
        let room = min(chain.writableLength / RPMBFrame.size, processor.maxResponseFrames)
        let length = chain.readableLength
        let frames = length / RPMBFrame.size
        guard length > 0, length % RPMBFrame.size == 0, frames <= processor.maxRequestFrames else {
            // Not whole frames, or more than any request may carry: a GENERAL_FAILURE frame, nothing done.
            guard room >= 1 else { return 0 }
            let r = FrameView(processor.responseFrames)
            r.clear()
            r.result = RPMBFrame.Result.generalFailure.rawValue
            return write(1, from: processor, into: chain)
        }
        var reader = chain.reader()
        reader.read(into: UnsafeMutableRawBufferPointer(start: processor.requestFrames, count: length))
        let answered = processor.process(requestCount: frames, responseRoom: room)
        return write(answered, from: processor, into: chain)
    }

    private func write(_ frames: Int, from processor: RPMBProcessor, into chain: DescriptorChain) -> Int {
        var writer = chain.writer()
        return writer.write(UnsafeRawBufferPointer(start: processor.responseFrames, count: frames * RPMBFrame.size))
    }
}
