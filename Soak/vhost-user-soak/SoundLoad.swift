/// vhost-user-snd (controlq): random control requests, well formed and not. Stream state is the
/// daemon's and a disconnect resets it, so each completion is checked against what holds in any
/// state: PCM_INFO answered byte for byte for the configured streams, malformed and out-of-range
/// requests refused with the right status, PCM state requests answered OK or BAD_MSG, control writes
/// of values out of range BAD_MSG, and the response length the driver expects.
final class SoundLoad: LoadProfile {
    static let name = "snd"
    static let ok: UInt32 = 0x8000, badMessage: UInt32 = 0x8001, notSupported: UInt32 = 0x8002

    private enum Expect {
        case status(UInt32)
        /// OK or BAD_MSG, depending on the stream's state.
        case okOrBadMessage
        /// OK and these info bytes.
        case info([UInt8])
    }
    private var expected: [Int: (Expect, request: String)] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0

    init(files: String) {}

    var executable: String { "vhost-user-snd" }
    var arguments: [String] { ["--playback", "channels=1-2:formats=s16,s32:rates=48000", "--capture", "channels=1:formats=u8:rates=8000"] }
    var maxQueues: Int { 1 }  // the controlq: transfers are held until their streams' periods come due
    var maxQueueSize: Int { 256 }
    var slabBytes: Int { 4096 }

    /// PCM_INFO of the two streams, as configured above.
    static let pcmInfo: [UInt8] = {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        return le(UInt32(0)) + le(UInt32(0)) + le(UInt64(1 << 5 | 1 << 17)) + le(UInt64(1 << 7)) + [0, 1, 2, 0, 0, 0, 0, 0]
            + le(UInt32(0)) + le(UInt32(0)) + le(UInt64(1 << 4)) + le(UInt64(1 << 1)) + [1, 1, 1, 0, 0, 0, 0, 0]
    }()

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        var request: [UInt32] = []
        var extra: [UInt8] = []
        var responseSize = 4
        let expect: Expect
        switch Int.random(in: 0..<6, using: &random) {
        case 0:  // PCM_INFO of both streams
            request = [0x100, 0, 2, 32]
            responseSize = 4 + 64
            expect = .info(Self.pcmInfo)
        case 1:  // a query past the end
            request = [[0x100, 1, 0x200, 0x300].randomElement(using: &random)!, UInt32.random(in: 5...100, using: &random), 1, 96]
            responseSize = 4 + 96
            expect = .status(Self.badMessage)
        case 2:  // a PCM state request on a stream that exists
            request = [UInt32.random(in: 0x102...0x105, using: &random), UInt32.random(in: 0...1, using: &random)]
            expect = .okOrBadMessage
        case 3:  // SET_PARAMS the stream does not offer
            request = [0x101, 0, 4096, 1024, 0]
            extra = [UInt8.random(in: 3...8, using: &random), 5, 7, 0]
            expect = .status(Self.notSupported)
        case 4:  // a control write out of range
            request = [0x303, UInt32.random(in: 0...3, using: &random), UInt32.random(in: 101...1000, using: &random)]
            extra = [UInt8](repeating: 0, count: 508)
            expect = .status(Self.badMessage)
        default:  // an unknown code
            request = [UInt32.random(in: 0x400...0xfff, using: &random)]
            expect = .status(Self.notSupported)
        }
        var bytes = request.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } + extra
        if bytes.count > 1024 { bytes = Array(bytes.prefix(1024)) }
        for (i, byte) in bytes.enumerated() { slab[i] = byte }
        for i in 0..<responseSize { slab[1024 + i] = 0xee }
        nextTag += 1
        expected[nextTag] = (expect, "request \(request.map { String($0, radix: 16) })")
        return LoadRequest(buffers: [SlabBuffer(offset: 0, length: bytes.count, writable: false),
                                     SlabBuffer(offset: 1024, length: responseSize, writable: true)], tag: nextTag)
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let (expect, request) = expected.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        let status = slab.load(fromByteOffset: 1024, as: UInt32.self).littleEndian
        switch expect {
        case let .status(wanted):
            guard status == wanted, usedLength == 4 else { return "\(request): status \(String(status, radix: 16)) length \(usedLength), not \(String(wanted, radix: 16))" }
        case .okOrBadMessage:
            guard status == Self.ok || status == Self.badMessage, usedLength == 4 else { return "\(request): status \(String(status, radix: 16))" }
        case let .info(bytes):
            guard status == Self.ok, usedLength == UInt32(4 + bytes.count),
                  (0..<bytes.count).allSatisfy({ slab[1028 + $0] == bytes[$0] }) else { return "\(request): wrong PCM_INFO" }
            bytesVerified += bytes.count
        }
        return nil
    }

    func abandon(_ tag: Int) { expected[tag] = nil }
}
