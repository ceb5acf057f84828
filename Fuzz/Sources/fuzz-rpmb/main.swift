// fuzz-rpmb: the virtio-rpmb request logic over arbitrary frame sequences, on an image in memory with
// a programmed key. Each request may be signed with the key and given the device's current write
// counter (flag bits), so the fuzzer reaches the authenticated paths (writes, reads, counter expiry
// checks) as well as every refusal. After each request: no more response frames than room, a
// response type that answers a request, a write counter that moved by at most one, and only after
// a write answered OK.
// Input: limits byte (max write blocks 1-4, max read blocks 1-4), then per request: frame count,
// response room, flags (bit 0 sign, bit 1 current counter, bit 2 in-range address), then the frames.
import FuzzSupport
import RPMBDevice

/// An image file in memory.
final class MemoryFile: ImageFile {
    var bytes: [UInt8]
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    var size: Int { bytes.count }
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(RPMBImageError) {
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + buffer.count])) }
    }
    func write(at offset: Int, from buffer: UnsafeRawBufferPointer) throws(RPMBImageError) {
        bytes.replaceSubrange(offset..<offset + buffer.count, with: buffer)
    }
    func sync() throws(RPMBImageError) {}
}

nonisolated(unsafe) let key = AuthenticationKey((0..<32).map { UInt8($0 &* 5 &+ 1) })!
let units = 1

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(rpmbSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    let file = MemoryFile(size: RPMBImage.fileSize(capacityUnits: units))
    try! RPMBImage.format(file, capacityUnits: units, key: input.bool() ? key : nil)
    let limits = input.u8()
    let processor = RPMBProcessor(image: try! RPMBImage(file: file), maxWriteBlocks: Int(limits & 3) + 1,
                                  maxReadBlocks: Int(limits >> 2 & 3) + 1, logger: quietLogger)
    var requests = 0
    while !input.isExhausted && requests < 16 {
        requests += 1
        let frames = input.below(processor.maxRequestFrames) + 1
        let room = input.below(processor.maxResponseFrames + 1)
        let flags = input.u8()
        let bytes = input.bytes(frames * RPMBFrame.size)
        processor.requestFrames.initializeMemory(as: UInt8.self, repeating: 0, count: frames * RPMBFrame.size)
        if !bytes.isEmpty { bytes.withUnsafeBytes { processor.requestFrames.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        let before = processor.image.writeCounter
        if flags & 2 != 0 {
            for i in 0..<frames { FrameView(processor.requestFrames + i * RPMBFrame.size).writeCounter = before }
        }
        if flags & 4 != 0 {
            let f = FrameView(processor.requestFrames)
            f.address = UInt16(Int(f.address) % processor.image.blockCount)
        }
        if flags & 1 != 0 {
            let blocks = min(max(Int(FrameView(processor.requestFrames).blockCount), 1), frames)
            key.sign(frames: processor.requestFrames, count: blocks)
        }
        let answered = processor.process(requestCount: frames, responseRoom: room)
        precondition(answered >= 0 && answered <= room, "\(answered) response frames with room for \(room)")
        for i in 0..<answered {
            let type = FrameView(processor.responseFrames + i * RPMBFrame.size).requestResponse
            precondition(type == 0 || (type & 0xff == 0 && (1...5).contains(type >> 8)), "response type \(type)")
        }
        let after = processor.image.writeCounter
        precondition(after == before || (after == before + 1 && FrameView(processor.requestFrames).requestResponse == 3),
                     "the write counter went from \(before) to \(after)")
    }
    return 0
}

/// Seeds: each request type, signed and not, alone and in sequences.
func rpmbSeeds() -> [(String, [UInt8])] {
    func frame(type: UInt16, blocks: UInt16 = 1, address: UInt16 = 0, counter: UInt32 = 0) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: RPMBFrame.size)
        f.withUnsafeMutableBytes { p in
            let v = FrameView(p.baseAddress!)
            v.requestResponse = type
            v.blockCount = blocks
            v.address = address
            v.writeCounter = counter
            v.data.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: type &* 17))
        }
        return f
    }
    /// One request: frame count, room, flags, frames.
    func request(_ frames: [[UInt8]], room: UInt8, flags: UInt8) -> [UInt8] {
        [UInt8(frames.count - 1), room, flags] + frames.flatMap { $0 }
    }
    let write = request([frame(type: 3, blocks: 2, address: 8), frame(type: 3, blocks: 2, address: 8), frame(type: 5)], room: 1, flags: 7)
    let read = request([frame(type: 4, blocks: 3, address: 6)], room: 3, flags: 4)
    let counter = request([frame(type: 2)], room: 1, flags: 0)
    let program = request([frame(type: 1), frame(type: 5)], room: 1, flags: 0)
    let result = request([frame(type: 5)], room: 1, flags: 0)
    let limits: UInt8 = 3 | 3 << 2
    return [
        ("program-then-write-read", [0, limits] + program + write + read + counter),
        ("keyed-write-read", [1, limits] + write + read + write + read),
        ("keyed-counter", [1, limits] + counter),
        ("result-read", [1, limits] + write + result),
        ("unsigned-write", [1, limits] + request([frame(type: 3), frame(type: 5)], room: 1, flags: 2)),
        ("unknown-type", [1, 0] + request([frame(type: 9)], room: 1, flags: 0)),
    ]
}
