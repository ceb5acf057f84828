import Logging

/// The RPMB request logic (virtio 1.2, 5.12.6 and JESD84-B51 6.6.22), independent of virtqueues: takes
/// the request frames of one chain (`requestFrames`, filled by the caller) and builds the response frames
/// (`responseFrames`). Buffers are allocated once, for the largest request the limits allow.
///
/// A chain carries the request frames (device-readable), then room for the response frames
/// (device-writable): PROGRAM_KEY [+ RESULT_READ] → 0 [1] frame; GET_WRITE_COUNTER → 1;
/// DATA_WRITE × block_count [+ RESULT_READ] → 0 [1]; DATA_READ → block_count; RESULT_READ → 1 (the result
/// of the last PROGRAM_KEY or DATA_WRITE).
///
/// Not thread-safe: `RPMBDevice` uses it under its lock only (hence the unchecked Sendable).
public final class RPMBProcessor: @unchecked Sendable {
    public let image: RPMBImage
    public let maxWriteBlocks: Int
    public let maxReadBlocks: Int
    /// Request frames, room for `maxRequestFrames`.
    public let requestFrames: UnsafeMutableRawPointer
    /// Response frames, room for `maxResponseFrames`.
    public let responseFrames: UnsafeMutableRawPointer
    public var maxRequestFrames: Int { maxWriteBlocks + 1 }
    public var maxResponseFrames: Int { maxReadBlocks }
    /// The response to the last PROGRAM_KEY or DATA_WRITE, what a RESULT_READ returns.
    private let lastResult: UnsafeMutableRawPointer
    private let logger: Logger

    public init(image: RPMBImage, maxWriteBlocks: Int, maxReadBlocks: Int, logger: Logger = Logger(label: "vhost-user-rpmb")) {
        precondition((1...RPMBImage.maxBlocksPerWrite).contains(maxWriteBlocks) && (1...255).contains(maxReadBlocks))
        self.image = image
        self.maxWriteBlocks = maxWriteBlocks
        self.maxReadBlocks = maxReadBlocks
        self.logger = logger
        requestFrames = .allocate(byteCount: (maxWriteBlocks + 1) * RPMBFrame.size, alignment: 16)
        responseFrames = .allocate(byteCount: maxReadBlocks * RPMBFrame.size, alignment: 16)
        lastResult = .allocate(byteCount: RPMBFrame.size, alignment: 16)
        FrameView(lastResult).clear()
        // Before any write: a RESULT_READ reports a general failure of "no operation".
        FrameView(lastResult).result = RPMBFrame.Result.generalFailure.rawValue
    }

    deinit {
        requestFrames.deallocate()
        responseFrames.deallocate()
        lastResult.deallocate()
    }

    func frame(_ i: Int) -> FrameView { FrameView(requestFrames + i * RPMBFrame.size) }
    func response(_ i: Int) -> FrameView { FrameView(responseFrames + i * RPMBFrame.size) }

    /// Serves `count` request frames (1...maxRequestFrames) with room for `room` response frames;
    /// returns how many response frames it wrote (0...room).
    public func process(requestCount count: Int, responseRoom room: Int) -> Int {
        precondition((1...maxRequestFrames).contains(count) && room >= 0)
        let type = frame(0).requestResponse
        guard let request = RPMBFrame.Request(rawValue: type) else {
            logger.warning("unknown request type \(type); answered GENERAL_FAILURE")
            return failure(response: 0, result: .generalFailure, room: room)
        }
        switch request {
        case .programKey: return programKey(count, room)
        case .getWriteCounter: return getWriteCounter(count, room)
        case .dataWrite: return dataWrite(count, room)
        case .dataRead: return dataRead(count, room)
        case .resultRead:
            guard room >= 1 else { return tooSmall(request, room) }
            if count != 1 || frame(0).blockCount != 1 {
                logger.warning("RESULT_READ with \(count) frames, block count \(frame(0).blockCount); answered GENERAL_FAILURE")
                return failure(response: RPMBFrame.Request.resultRead.response, result: .generalFailure, room: room)
            }
            responseFrames.copyMemory(from: lastResult, byteCount: RPMBFrame.size)
            return 1
        }
    }

    /// A single response frame with `result` (signed when a key is programmed).
    private func failure(response type: UInt16, result: RPMBFrame.Result, room: Int) -> Int {
        guard room >= 1 else { return 0 }
        let r = response(0)
        r.clear()
        r.requestResponse = type
        r.result = result.rawValue
        r.writeCounter = image.writeCounter
        image.key?.sign(frames: responseFrames, count: 1)
        return 1
    }

    private func tooSmall(_ request: RPMBFrame.Request, _ room: Int) -> Int {
        logger.warning("\(request) request without room for its response (\(room) frames); returned empty")
        return 0
    }

    /// Whether frames 0..<count are `blocks` frames of `request` followed, optionally, by one RESULT_READ
    /// with block count 1; nil when the chain has another shape.
    private func trailingResultRead(_ count: Int, blocks: Int, request: RPMBFrame.Request) -> Bool? {
        guard count == blocks || count == blocks + 1 else { return nil }
        for i in 0..<blocks where frame(i).requestResponse != request.rawValue { return nil }
        guard count == blocks + 1 else { return false }
        let last = frame(blocks)
        return last.requestResponse == RPMBFrame.Request.resultRead.rawValue && last.blockCount == 1 ? true : nil
    }

    /// Records the result of a PROGRAM_KEY or DATA_WRITE for RESULT_READ, and returns it when asked.
    private func finishWrite(_ type: RPMBFrame.Request, result: RPMBFrame.Result, address: UInt16, wantsResult: Bool, room: Int) -> Int {
        let r = FrameView(lastResult)
        r.clear()
        r.requestResponse = type.response
        r.result = result.rawValue
        if type == .dataWrite {
            r.writeCounter = image.writeCounter
            r.address = address
        }
        image.key?.sign(frames: lastResult, count: 1)
        if result != .ok { logger.info("\(type) answered result \(result)") }
        guard wantsResult else { return 0 }
        guard room >= 1 else { return tooSmall(type, room) }
        responseFrames.copyMemory(from: lastResult, byteCount: RPMBFrame.size)
        return 1
    }

    private func programKey(_ count: Int, _ room: Int) -> Int {
        guard let wantsResult = trailingResultRead(count, blocks: 1, request: .programKey) else {
            return finishWrite(.programKey, result: .generalFailure, address: 0, wantsResult: true, room: room)
        }
        let result: RPMBFrame.Result
        if frame(0).blockCount != 1 {
            result = .generalFailure
        } else if image.key != nil || image.failure != nil {
            // One-time programmable (virtio 1.2, 5.12.6.2): a second PROGRAM_KEY fails.
            result = .writeFailure
        } else {
            do {
                try image.programKey(AuthenticationKey(copying: UnsafeRawBufferPointer(frame(0).keyOrMAC)))
                logger.notice("authentication key programmed")
                result = .ok
            } catch {
                logger.error("cannot program the key: \(error)")
                result = .writeFailure
            }
        }
        return finishWrite(.programKey, result: result, address: 0, wantsResult: wantsResult, room: room)
    }

    private func getWriteCounter(_ count: Int, _ room: Int) -> Int {
        guard room >= 1 else { return tooSmall(.getWriteCounter, room) }
        let request = frame(0), r = response(0)
        r.clear()
        r.requestResponse = RPMBFrame.Request.getWriteCounter.response
        r.nonce.copyMemory(from: UnsafeRawBufferPointer(request.nonce))
        guard let key = image.key else {
            r.result = RPMBFrame.Result.noAuthenticationKey.rawValue
            return 1
        }
        if count != 1 || request.blockCount != 1 || image.failure != nil {
            r.result = RPMBFrame.Result.generalFailure.rawValue
        } else {
            r.writeCounter = image.writeCounter
            // An expired counter is reported with the expired bit (JESD84-B51 6.6.22.5).
            r.result = (image.writeCounter == .max ? RPMBFrame.Result.writeCounterExpired : .ok).rawValue
        }
        key.sign(frames: responseFrames, count: 1)
        return 1
    }

    private func dataWrite(_ count: Int, _ room: Int) -> Int {
        let first = frame(0)
        let blocks = Int(first.blockCount), address = first.address
        let shape = trailingResultRead(count, blocks: blocks, request: .dataWrite)
        let wantsResult = shape ?? true
        let result: RPMBFrame.Result
        // The checks in the order virtio 1.2, 5.12.6.3 lists them.
        if image.key == nil {
            result = .noAuthenticationKey
        } else if blocks == 0 || blocks > maxWriteBlocks || shape == nil {
            result = .generalFailure
        } else if image.writeCounter == .max {
            result = .writeCounterExpired
        } else if Int(address) + blocks > image.blockCount {
            result = .addressFailure
        } else if !image.key!.verify(frames: requestFrames, count: blocks) {
            result = .authenticationFailure
        } else if first.writeCounter != image.writeCounter {
            result = .counterFailure
        } else if image.failure != nil {
            result = .writeFailure
        } else {
            do {
                try image.write(address: Int(address), blocks: blocks, frames: requestFrames)
                result = .ok
            } catch {
                logger.error("authenticated write of \(blocks) blocks at \(address) failed: \(error)")
                result = .writeFailure
            }
        }
        return finishWrite(.dataWrite, result: result, address: address, wantsResult: wantsResult, room: room)
    }

    private func dataRead(_ count: Int, _ room: Int) -> Int {
        let request = frame(0)
        let blocks = Int(request.blockCount), address = request.address
        let type = RPMBFrame.Request.dataRead.response
        func fail(_ result: RPMBFrame.Result) -> Int {
            guard room >= 1 else { return tooSmall(.dataRead, room) }
            let r = response(0)
            r.clear()
            r.requestResponse = type
            r.result = result.rawValue
            r.address = address
            r.blockCount = request.blockCount
            r.nonce.copyMemory(from: UnsafeRawBufferPointer(request.nonce))
            image.key?.sign(frames: responseFrames, count: 1)
            logger.info("DATA_READ of \(blocks) blocks at \(address) answered result \(result)")
            return 1
        }
        guard image.key != nil else { return fail(.noAuthenticationKey) }
        guard count == 1, blocks >= 1, blocks <= maxReadBlocks else { return fail(.generalFailure) }
        guard room >= blocks else {
            logger.warning("DATA_READ of \(blocks) blocks with room for \(room) response frames")
            return fail(.generalFailure)
        }
        guard Int(address) + blocks <= image.blockCount else { return fail(.addressFailure) }
        do {
            try image.read(address: Int(address), blocks: blocks, frames: responseFrames)
        } catch {
            logger.error("read of \(blocks) blocks at \(address) failed: \(error)")
            return fail(.readFailure)
        }
        for i in 0..<blocks {
            let r = response(i)
            // Everything but the data the read just placed.
            (r.base).initializeMemory(as: UInt8.self, repeating: 0, count: RPMBFrame.Offset.data)
            UnsafeMutableRawBufferPointer(start: r.base + RPMBFrame.Offset.nonce, count: RPMBFrame.size - RPMBFrame.Offset.nonce)
                .initializeMemory(as: UInt8.self, repeating: 0)
            r.nonce.copyMemory(from: UnsafeRawBufferPointer(request.nonce))
            r.address = address
            r.blockCount = request.blockCount
            r.result = RPMBFrame.Result.ok.rawValue
            r.requestResponse = type
        }
        image.key!.sign(frames: responseFrames, count: blocks)
        return blocks
    }
}
