import CPipeWire
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// `pipewire`: each stream is a PipeWire stream (`--pipewire-playback`/`--pipewire-capture` name the
/// sink or source node; none: wherever the session manager links it). The group's worker never
/// calls PipeWire: a stream's periods pass through a `PeriodRing` to the stream's `process`
/// callback on the backend's thread loop, which fills or drains PipeWire's buffers without waiting.
/// PipeWire takes every guest format (U8, S16, S24 in 32 bits, S32, FLOAT) at any rate and
/// converts to its graph itself, so no `SampleConverter` is needed on this side.
public final class PipeWireBackend: SoundBackend, @unchecked Sendable {  // the loop is PipeWire's, locked where used
    public let playbackTarget: String?
    public let captureTarget: String?
    private let loop: OpaquePointer

    /// Starts the backend's thread loop. Throws when PipeWire cannot make one.
    public init(playback: String?, capture: String?) throws(SoundBackendError) {
        playbackTarget = playback
        captureTarget = capture
        pw_init(nil, nil)
        guard let loop = pw_thread_loop_new("vhu-snd-pw", nil) else { throw SoundBackendError("pipewire: cannot make a thread loop") }
        guard pw_thread_loop_start(loop) == 0 else {
            pw_thread_loop_destroy(loop)
            throw SoundBackendError("pipewire: cannot start the thread loop")
        }
        self.loop = loop
    }

    deinit {
        pw_thread_loop_stop(loop)
        pw_thread_loop_destroy(loop)
    }

    public var name: String { "pipewire" }

    public func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint {
        let capture = spec.direction == .input
        return try PipeWireStream(loop: loop, name: "vhost-user-snd-\(capture ? "capture" : "playback")-\(id)",
                                  target: capture ? captureTarget : playbackTarget, capture: capture, parameters: parameters)
    }

    static func format(_ format: SampleFormat) -> spa_audio_format {
        switch format {
        case .u8: SPA_AUDIO_FORMAT_U8
        case .s16: SPA_AUDIO_FORMAT_S16_LE
        case .s24: SPA_AUDIO_FORMAT_S24_32_LE
        case .s32: SPA_AUDIO_FORMAT_S32_LE
        case .float: SPA_AUDIO_FORMAT_F32_LE
        }
    }
}

/// One stream's PipeWire side: the worker pushes and pops periods; `process` (the loop's thread)
/// moves them in and out of PipeWire's buffers, a period split over buffers as their sizes fall.
final class PipeWireStream: StreamEndpoint, @unchecked Sendable {  // `partial` is the loop thread's; the ring is locked
    private let loop: OpaquePointer
    private var stream: OpaquePointer?
    private let ring: PeriodRing
    private let capture: Bool
    private let frameBytes: Int
    private let silence: UInt8
    /// The loop thread's period in progress: being read out (playback) or filled (capture).
    private var partial: [UInt8]
    private var partialUsed: Int
    static let slots = 4

    init(loop: OpaquePointer, name: String, target: String?, capture: Bool, parameters: PCMParameters) throws(SoundBackendError) {
        self.loop = loop
        self.capture = capture
        frameBytes = Int(parameters.channels) * parameters.format.bytesPerSample
        silence = parameters.format.silenceByte
        ring = PeriodRing(slots: Self.slots, periodBytes: Int(parameters.periodBytes))
        partial = [UInt8](repeating: 0, count: Int(parameters.periodBytes))
        partialUsed = capture ? 0 : partial.count
        pw_thread_loop_lock(loop)
        stream = vhu_pw_stream_open(loop, name, target, capture ? 1 : 0, PipeWireBackend.format(parameters.format).rawValue,
                                    UInt32(parameters.channels), parameters.rate, UInt32(parameters.periodFrames),
                                    { data in Unmanaged<PipeWireStream>.fromOpaque(data!).takeUnretainedValue().process() },
                                    Unmanaged.passUnretained(self).toOpaque())
        pw_thread_loop_unlock(loop)
        guard stream != nil else { throw SoundBackendError("pipewire: cannot connect a stream to \(target ?? "the default node") (is the PipeWire daemon running?)") }
    }

    deinit {
        pw_thread_loop_lock(loop)
        pw_stream_destroy(stream)
        pw_thread_loop_unlock(loop)
    }

    // MARK: The worker's side (never blocks on PipeWire)

    func play(_ period: UnsafeRawBufferPointer) { _ = ring.push(period) }

    func capture(into period: UnsafeMutableRawBufferPointer) {
        if !ring.pop(into: period) { period.initializeMemory(as: UInt8.self, repeating: silence) }
    }

    var delayBytes: Int { ring.count * ring.periodBytes }

    // MARK: The loop thread's side

    private func process() {
        guard let stream, let buffer = pw_stream_dequeue_buffer(stream) else { return }
        defer { pw_stream_queue_buffer(stream, buffer) }
        guard let data = buffer.pointee.buffer?.pointee.datas, let base = data.pointee.data, let chunk = data.pointee.chunk else { return }
        let maxSize = Int(data.pointee.maxsize)
        if capture {
            let offset = min(Int(chunk.pointee.offset), maxSize), size = min(Int(chunk.pointee.size), maxSize - offset)
            take(UnsafeRawBufferPointer(start: base + offset, count: size))
        } else {
            var size = maxSize
            if buffer.pointee.requested > 0 { size = min(size, Int(buffer.pointee.requested) * frameBytes) }
            size -= size % frameBytes
            fill(UnsafeMutableRawBufferPointer(start: base, count: size))
            chunk.pointee.offset = 0
            chunk.pointee.stride = Int32(frameBytes)
            chunk.pointee.size = UInt32(size)
        }
    }

    /// Playback: `out` from the ring's periods, silence where the guest has sent none.
    private func fill(_ out: UnsafeMutableRawBufferPointer) {
        var done = 0
        while done < out.count {
            if partialUsed == partial.count {
                guard partial.withUnsafeMutableBytes({ ring.pop(into: $0) }) else { break }
                partialUsed = 0
            }
            let n = min(out.count - done, partial.count - partialUsed)
            partial.withUnsafeBytes { out.baseAddress!.advanced(by: done).copyMemory(from: $0.baseAddress! + partialUsed, byteCount: n) }
            partialUsed += n
            done += n
        }
        (out.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: silence, count: out.count - done)
    }

    /// Capture: `input` into periods, each pushed to the ring when full (lost when the ring is).
    private func take(_ input: UnsafeRawBufferPointer) {
        var done = 0
        while done < input.count {
            let n = min(input.count - done, partial.count - partialUsed)
            partial.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: partialUsed).copyMemory(from: input.baseAddress! + done, byteCount: n) }
            partialUsed += n
            done += n
            if partialUsed == partial.count {
                _ = partial.withUnsafeBytes { ring.push($0) }
                partialUsed = 0
            }
        }
    }
}
