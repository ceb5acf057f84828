/// What PCM_SET_PARAMS chose for a stream (validated against its `StreamSpec`).
public struct PCMParameters: Equatable, Sendable {
    public var bufferBytes: UInt32
    public var periodBytes: UInt32
    public var channels: UInt8
    public var format: SampleFormat
    public var rate: UInt32

    public init(bufferBytes: UInt32, periodBytes: UInt32, channels: UInt8, format: SampleFormat, rate: UInt32) {
        self.bufferBytes = bufferBytes
        self.periodBytes = periodBytes
        self.channels = channels
        self.format = format
        self.rate = rate
    }

    public var frameBytes: Int { Int(channels) * format.bytesPerSample }
    public var periodFrames: Int { Int(periodBytes) / frameBytes }
    /// The monotonic time at which period `n` (counted from 1) ends, `start` being time zero.
    public func deadline(ofPeriod n: UInt64, from start: UInt64) -> UInt64 {
        start &+ n &* UInt64(periodFrames) &* 1_000_000_000 / UInt64(rate)
    }

    /// Why `spec` refuses these parameters, or nil when it accepts them.
    func refusal(by spec: StreamSpec) -> String? {
        if !spec.channels.contains(channels) { return "\(channels) channels (the stream has \(spec.channels))" }
        if !spec.formats.contains(format) { return "format \(format) (the stream has \(spec.formats.map(\.rawValue)))" }
        if !spec.rates.contains(rate) { return "rate \(rate) (the stream has \(spec.rates))" }
        if !spec.bufferBytes.contains(bufferBytes) { return "a buffer of \(bufferBytes) bytes (the stream takes \(spec.bufferBytes))" }
        if !spec.periodBytes.contains(periodBytes) { return "a period of \(periodBytes) bytes (the stream takes \(spec.periodBytes))" }
        if periodBytes > bufferBytes { return "a period of \(periodBytes) bytes in a buffer of \(bufferBytes)" }
        if Int(periodBytes) % frameBytes != 0 || Int(bufferBytes) % frameBytes != 0 {
            return "buffer \(bufferBytes) or period \(periodBytes) bytes not a multiple of the \(frameBytes)-byte frame"
        }
        return nil
    }
}

/// The PCM stream state machine (virtio 1.3, 5.14.6.6.1): which request may follow which.
public enum PCMState: UInt8, Equatable, Sendable {
    case idle = 0, parametersSet, prepared, running, stopped, released

    /// The state after `code`, or nil when the request is out of order here.
    func after(_ code: VirtioSound.Code) -> PCMState? {
        switch (code, self) {
        case (.pcmSetParams, .idle), (.pcmSetParams, .parametersSet), (.pcmSetParams, .prepared), (.pcmSetParams, .released):
            .parametersSet
        case (.pcmPrepare, .parametersSet), (.pcmPrepare, .prepared), (.pcmPrepare, .released):
            .prepared
        case (.pcmStart, .prepared), (.pcmStart, .stopped):
            .running
        case (.pcmStop, .running):
            .stopped
        case (.pcmRelease, .prepared), (.pcmRelease, .stopped):
            .released
        default:
            nil
        }
    }

    /// Transfers are taken (held until the stream runs) in these states.
    var acceptsTransfers: Bool { self == .prepared || self == .running || self == .stopped }
}
