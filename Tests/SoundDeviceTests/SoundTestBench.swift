import SoundDevice
import VhostUserKit
import VhostUserTesting

/// A virtio-snd device with its queue group turned on the test's thread (`GroupHarness`), and helpers
/// that build controlq, eventq, txq and rxq buffers in guest memory.
final class SoundTestBench {
    typealias Code = VirtioSound.Code
    static let ok = VirtioSound.Status.ok.rawValue, badMessage = VirtioSound.Status.badMessage.rawValue
    static let notSupported = VirtioSound.Status.notSupported.rawValue, ioError = VirtioSound.Status.ioError.rawValue

    let device: SoundDevice
    let harness: GroupHarness
    var memory: FakeGuestMemory { harness.memory }

    /// Playback stream 0 (stereo S16/S32, 48 kHz) and capture stream 1 (mono U8/S16/float, 8 kHz and 48 kHz).
    static let defaultStreams: [StreamSpec] = [
        try! StreamSpec.parse("channels=1-2:formats=s16,s32:rates=48000:buffer=64-65536:period=16-16384", direction: .output),
        try! StreamSpec.parse("channels=1:formats=u8,s16,float:rates=8000,48000", direction: .input),
    ]

    init(streams: [StreamSpec] = defaultStreams, backend: any SoundBackend = NullBackend(), features: UInt64? = nil,
         memoryBytes: Int = 4 << 20, periodEvents: Bool = true) throws {
        device = SoundDevice(streams: streams, backend: backend, periodEvents: periodEvents)
        harness = try GroupHarness(device: device, queueSize: 256, features: features,
                                   memory: FakeGuestMemory(size: memoryBytes))
    }

    deinit { harness.finish() }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Sends `request` on the controlq with a response buffer of `responseSize`; returns the used length
    /// and the response bytes.
    func control(_ request: [UInt8], responseSize: Int = 4) -> (length: UInt32, response: [UInt8]) {
        var buffers: [BufferSpec] = []
        if !request.isEmpty {
            let r = memory.allocate(request.count)
            memory.write(request, at: r)
            buffers.append(.readable(r, request.count))
        }
        let response = memory.allocate(max(responseSize, 1))
        memory.write([UInt8](repeating: 0xee, count: max(responseSize, 1)), at: response)
        if responseSize > 0 { buffers.append(.writable(response, responseSize)) }
        harness.queue(VirtioSound.controlQueue).submit(buffers)
        harness.run()
        let used = harness.queue(VirtioSound.controlQueue).takeUsed()
        precondition(used.count == 1, "expected one completion, got \(used.count)")
        return (used[0].length, memory.read(response, count: responseSize))
    }

    /// A request's status.
    func status(_ request: [UInt8]) -> UInt32 {
        let (length, response) = control(request)
        return length == 4 ? Self.u32(response, 0) : 0
    }

    func pcm(_ code: Code, stream: UInt32) -> UInt32 { status(Self.le(code.rawValue) + Self.le(stream)) }

    func setParams(stream: UInt32, buffer: UInt32 = 4096, period: UInt32 = 1024, features: UInt32 = 0, channels: UInt8 = 2,
                   format: VirtioSound.Format = .s16, rate: UInt8 = 7) -> UInt32 {
        status(Self.le(Code.pcmSetParams.rawValue) + Self.le(stream) + Self.le(buffer) + Self.le(period) + Self.le(features)
               + [channels, format.rawValue, rate, 0])
    }

    /// A query: status and the items' bytes.
    func query(_ code: Code, start: UInt32, count: UInt32, size: UInt32, responseSize: Int? = nil) -> (status: UInt32, items: [UInt8]) {
        let (length, response) = control(Self.le(code.rawValue) + Self.le(start) + Self.le(count) + Self.le(size),
                                         responseSize: responseSize ?? 4 + Int(count * size))
        return (Self.u32(response, 0), Array(response[4..<Int(length)]))
    }

    /// A txq buffer: the xfer header for `stream`, `pcm`, and an 8-byte status. Returns its head and the
    /// status address.
    @discardableResult
    func play(stream: UInt32, _ pcm: [UInt8], run: Bool = true) -> (head: UInt16, status: UInt64) {
        let header = memory.allocate(4)
        memory.write(Self.le(stream), at: header)
        var buffers: [BufferSpec] = [.readable(header, 4)]
        if !pcm.isEmpty {
            let data = memory.allocate(pcm.count)
            memory.write(pcm, at: data)
            buffers.append(.readable(data, pcm.count))
        }
        let status = memory.allocate(8)
        memory.write([UInt8](repeating: 0xee, count: 8), at: status)
        buffers.append(.writable(status, 8))
        let head = harness.queue(VirtioSound.txQueue).submit(buffers)
        if run { harness.run() }
        return (head, status)
    }

    /// An rxq buffer for `bytes` of capture. Returns its head, data and status addresses.
    @discardableResult
    func record(stream: UInt32, bytes: Int) -> (head: UInt16, data: UInt64, status: UInt64) {
        let header = memory.allocate(4)
        memory.write(Self.le(stream), at: header)
        let data = memory.allocate(max(bytes, 1))
        memory.write([UInt8](repeating: 0xee, count: max(bytes, 1)), at: data)
        let status = memory.allocate(8)
        memory.write([UInt8](repeating: 0xee, count: 8), at: status)
        var buffers: [BufferSpec] = [.readable(header, 4)]
        if bytes > 0 { buffers.append(.writable(data, bytes)) }
        buffers.append(.writable(status, 8))
        let head = harness.queue(VirtioSound.rxQueue).submit(buffers)
        harness.run()
        return (head, data, status)
    }

    /// The (status, latency) a transfer's status holds.
    func transferStatus(_ address: UInt64) -> (status: UInt32, latency: UInt32) {
        let bytes = memory.read(address, count: 8)
        return (Self.u32(bytes, 0), Self.u32(bytes, 4))
    }

    /// An eventq buffer; returns its address.
    @discardableResult
    func queueEvent() -> UInt64 {
        let event = memory.allocate(8)
        memory.write([UInt8](repeating: 0xee, count: 8), at: event)
        harness.queue(VirtioSound.eventQueue).submit([.writable(event, 8)])
        harness.run()
        return event
    }

    /// Turns the group until `queue` has `count` used buffers or `timeout` nanoseconds passed; returns
    /// them with the monotonic time each was seen.
    func waitUsed(_ queue: Int, count: Int, timeoutNanoseconds: UInt64 = 5_000_000_000) -> [(used: UsedElement, at: UInt64)] {
        var seen: [(UsedElement, UInt64)] = []
        let deadline = monotonicNanoseconds() + timeoutNanoseconds
        while seen.count < count && monotonicNanoseconds() < deadline {
            harness.wait(milliseconds: 2)
            let now = monotonicNanoseconds()
            seen += harness.queue(queue).takeUsed().map { ($0, now) }
        }
        return seen
    }

    /// Brings stream `id` to RUNNING with the given parameters (asserting every step answers OK).
    func run(stream id: UInt32, buffer: UInt32 = 4096, period: UInt32 = 1024, channels: UInt8 = 2,
             format: VirtioSound.Format = .s16, rate: UInt8 = 7) -> Bool {
        setParams(stream: id, buffer: buffer, period: period, channels: channels, format: format, rate: rate) == Self.ok
            && pcm(.pcmPrepare, stream: id) == Self.ok
            && pcm(.pcmStart, stream: id) == Self.ok
    }
}

/// A backend that records what it was given and captures a counting pattern.
final class RecordingBackend: SoundBackend, @unchecked Sendable {  // used from the test's thread only
    final class Endpoint: StreamEndpoint {
        var played: [UInt8] = []
        var counter: UInt8 = 0
        func play(_ period: UnsafeRawBufferPointer) { played += period }
        func capture(into period: UnsafeMutableRawBufferPointer) {
            for i in 0..<period.count { period[i] = counter; counter &+= 1 }
        }
    }
    var endpoints: [Int: Endpoint] = [:]
    var failOpen = false
    var name: String { "recording" }
    func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint {
        if failOpen { throw SoundBackendError("refused by the test") }
        let endpoint = Endpoint()
        endpoints[id] = endpoint
        return endpoint
    }
}
