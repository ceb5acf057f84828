import Crypto
import Logging
import VhostUserKit
import VhostUserTesting
@testable import RPMBDevice

/// One RPMB frame as a driver builds and reads it, with the byte offsets of virtio 1.2, 5.12.6.1 written
/// out here (not taken from the device's code), big-endian fields.
struct Frame: Equatable {
    var bytes = [UInt8](repeating: 0, count: 512)

    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(type: UInt16, blockCount: UInt16 = 1, address: UInt16 = 0, counter: UInt32 = 0,
         nonce: [UInt8] = [], data: [UInt8] = [], keyOrMAC: [UInt8] = []) {
        self.type = type
        self.blockCount = blockCount
        self.address = address
        self.counter = counter
        bytes.replaceSubrange(484..<484 + nonce.count, with: nonce)
        bytes.replaceSubrange(228..<228 + data.count, with: data)
        bytes.replaceSubrange(196..<196 + keyOrMAC.count, with: keyOrMAC)
    }

    private func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
    private mutating func setU16(_ v: UInt16, _ at: Int) { bytes[at] = UInt8(v >> 8); bytes[at + 1] = UInt8(v & 0xff) }

    var type: UInt16 { get { u16(510) } set { setU16(newValue, 510) } }
    var result: UInt16 { get { u16(508) } set { setU16(newValue, 508) } }
    var blockCount: UInt16 { get { u16(506) } set { setU16(newValue, 506) } }
    var address: UInt16 { get { u16(504) } set { setU16(newValue, 504) } }
    var counter: UInt32 {
        get { UInt32(u16(500)) << 16 | UInt32(u16(502)) }
        set { setU16(UInt16(newValue >> 16), 500); setU16(UInt16(newValue & 0xffff), 502) }
    }
    var mac: [UInt8] { get { Array(bytes[196..<228]) } set { bytes.replaceSubrange(196..<228, with: newValue) } }
    var data: [UInt8] { Array(bytes[228..<484]) }
    var nonce: [UInt8] { Array(bytes[484..<500]) }
}

enum RequestType {
    static let programKey: UInt16 = 1, getCounter: UInt16 = 2, write: UInt16 = 3, read: UInt16 = 4, resultRead: UInt16 = 5
}
enum ResultCode {
    static let ok: UInt16 = 0, general: UInt16 = 1, auth: UInt16 = 2, counter: UInt16 = 3, address: UInt16 = 4
    static let writeFailure: UInt16 = 5, readFailure: UInt16 = 6, noKey: UInt16 = 7, expired: UInt16 = 0x80
}

/// The device's logger in tests: only what would end the daemon.
let quietLogger: Logger = {
    var logger = Logger(label: "vhost-user-rpmb-test")
    logger.logLevel = .critical
    return logger
}()

/// HMAC-SHA256 over bytes 228..<512 of each frame, computed with swift-crypto directly.
func referenceMAC(key: [UInt8], _ frames: [Frame]) -> [UInt8] {
    var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
    for f in frames { hmac.update(data: f.bytes[228..<512]) }
    return Array(hmac.finalize())
}

/// A driver for one RPMB device served by a `GroupHarness` (synchronously, no daemon): builds request
/// chains, runs the queue and reads the responses back.
final class RPMBDriver {
    let device: RPMBDevice
    let harness: GroupHarness
    let queue: FakeQueue
    var key: [UInt8]
    private var nonceSeed: UInt8 = 0

    init(device: RPMBDevice, key: [UInt8] = (0..<32).map { UInt8($0 * 7 + 3) }) throws {
        self.device = device
        self.key = key
        harness = try GroupHarness(device: device, queueSize: 64)
        queue = harness.queue(0)
    }

    convenience init(image: MemoryImageFile, limits: RPMBDevice.Limits = .init()) throws {
        try self.init(device: try RPMBDevice(image: try RPMBImage(file: image), limits: limits, logger: quietLogger))
    }

    func nextNonce() -> [UInt8] {
        nonceSeed &+= 1
        return (0..<16).map { UInt8(truncatingIfNeeded: Int($0) * 31 + Int(nonceSeed)) }
    }

    /// Sends `request` (the readable buffers, one per frame unless `raw` is given) with `responseBytes`
    /// of writable room; returns the used length and the writable bytes as frames.
    func exchange(_ request: [Frame], responseBytes: Int, raw: [UInt8]? = nil) -> (length: UInt32, frames: [Frame]) {
        let readable = raw ?? request.flatMap(\.bytes)
        var buffers: [BufferSpec] = []
        if !readable.isEmpty {
            let r = harness.memory.allocate(readable.count)
            harness.memory.write(readable, at: r)
            buffers.append(.readable(r, readable.count))
        }
        var w: UInt64 = 0
        if responseBytes > 0 {
            w = harness.memory.allocate(responseBytes)
            harness.memory.write([UInt8](repeating: 0xEE, count: responseBytes), at: w)
            buffers.append(.writable(w, responseBytes))
        }
        queue.submit(buffers)
        harness.run()
        let used = queue.takeUsed()
        precondition(used.count == 1)
        let bytes = responseBytes > 0 ? harness.memory.read(w, count: responseBytes) : []
        let frames = stride(from: 0, to: Int(used[0].length) / 512 * 512, by: 512).map { Frame(Array(bytes[$0..<$0 + 512])) }
        return (used[0].length, frames)
    }

    func sign(_ frames: [Frame]) -> [Frame] {
        var frames = frames
        frames[frames.count - 1].mac = referenceMAC(key: key, frames)
        return frames
    }

    /// PROGRAM_KEY with a RESULT_READ; the response frame.
    func programKey(_ key: [UInt8]? = nil) -> Frame {
        let r = exchange([Frame(type: RequestType.programKey, keyOrMAC: key ?? self.key), Frame(type: RequestType.resultRead)],
                         responseBytes: 512)
        return r.frames[0]
    }

    /// GET_WRITE_COUNTER with a fresh nonce; the response and the nonce sent.
    func counter() -> (response: Frame, nonce: [UInt8]) {
        let nonce = nextNonce()
        return (exchange([Frame(type: RequestType.getCounter, nonce: nonce)], responseBytes: 512).frames[0], nonce)
    }

    /// The frames of an authenticated write of `blocks` (256 bytes each) at `address` with `counter`, signed.
    func writeFrames(address: UInt16, blocks: [[UInt8]], counter: UInt32) -> [Frame] {
        sign(blocks.map { Frame(type: RequestType.write, blockCount: UInt16(blocks.count), address: address, counter: counter, data: $0) })
    }

    /// An authenticated write with a RESULT_READ; the result frame.
    func write(address: UInt16, blocks: [[UInt8]], counter: UInt32) -> Frame {
        exchange(writeFrames(address: address, blocks: blocks, counter: counter) + [Frame(type: RequestType.resultRead)],
                 responseBytes: 512).frames[0]
    }

    /// DATA_READ of `count` blocks; the response frames and the nonce sent.
    func read(address: UInt16, count: UInt16, room: Int? = nil) -> (frames: [Frame], nonce: [UInt8], length: UInt32) {
        let nonce = nextNonce()
        let r = exchange([Frame(type: RequestType.read, blockCount: count, address: address, nonce: nonce)],
                         responseBytes: (room ?? Int(count)) * 512)
        return (r.frames, nonce, r.length)
    }

    func macIsValid(_ frames: [Frame]) -> Bool { frames.last?.mac == referenceMAC(key: key, frames) }

    static func block(_ seed: Int) -> [UInt8] { (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed &* 101 &+ 1) } }
}
