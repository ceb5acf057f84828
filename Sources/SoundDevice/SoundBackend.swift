/// Where a stream's samples go and come from on the host: opened at PCM_PREPARE, used once a period
/// on the queue group's worker (so it must not block), flushed at PCM_RELEASE.
public protocol SoundBackend: Sendable {
    /// A short name for logs (`null`, `wav`, `alsa`, `pipewire`).
    var name: String { get }
    /// The host side of stream `id` with `parameters`. Throwing answers PCM_PREPARE with IO_ERR.
    func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint
}

/// One stream's host side.
public protocol StreamEndpoint: AnyObject {
    /// Playback: takes one period of the guest's samples (already scaled by the stream's volume).
    func play(_ period: UnsafeRawBufferPointer)
    /// Capture: fills one period with host samples.
    func capture(into period: UnsafeMutableRawBufferPointer)
    /// Bytes the host holds between the device and the speaker or microphone (for latency_bytes).
    var delayBytes: Int { get }
    /// The stream was released: make what was played durable (e.g. a WAV header's sizes).
    func flush()
}

extension StreamEndpoint {
    public var delayBytes: Int { 0 }
    public func flush() {}
}

/// Errors of the host backends.
public struct SoundBackendError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `null`: playback is discarded, capture is silence; both at the stream's pace.
public struct NullBackend: SoundBackend {
    public init() {}
    public var name: String { "null" }
    public func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint {
        NullEndpoint(silence: parameters.format.silenceByte)
    }
}

final class NullEndpoint: StreamEndpoint {
    private let silence: UInt8
    init(silence: UInt8) { self.silence = silence }
    func play(_ period: UnsafeRawBufferPointer) {}
    func capture(into period: UnsafeMutableRawBufferPointer) {
        guard let base = period.baseAddress else { return }
        base.initializeMemory(as: UInt8.self, repeating: silence, count: period.count)
    }
}
