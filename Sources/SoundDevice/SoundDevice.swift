import VhostUserKit

/// virtio-snd (virtio 1.3, 5.14): a controlq, an eventq, a txq and an rxq, one queue group served by
/// `SoundGroupHandler`, since every queue touches the same streams. Streams, their jacks, channel maps
/// and volume/switch controls are what the command line configured; the host side is a `SoundBackend`.
public final class SoundDevice: VhostUserDevice {
    public let streams: [StreamSpec]
    public let backend: any SoundBackend
    public let offersControls: Bool
    public let hasJacks: Bool
    /// Send a PCM_PERIOD_ELAPSED event for each period (when the driver gave eventq buffers).
    public let periodEvents: Bool

    /// What the running group borrows: the streams' and jacks' state (one thread at a time, like
    /// `GPIODevice.State`).
    let state: Locked<SoundState?>
    /// Jack changes from other threads, for the group to report on the eventq.
    let pendingJackEvents = Locked<[(jack: Int, connected: Bool)]>([])
    let waker = Locked<GroupWaker?>(nil)
    /// A copy of each stream's counters, readable from any thread.
    let published: Locked<[StreamStatus]>

    public init(streams: [StreamSpec], backend: any SoundBackend, controls: Bool = true, jacks: Bool = true,
                periodEvents: Bool = true) {
        self.streams = streams
        self.backend = backend
        offersControls = controls
        hasJacks = jacks
        self.periodEvents = periodEvents
        state = Locked(SoundState(streams: streams, jacks: jacks))
        published = Locked(streams.map { _ in StreamStatus() })
    }

    public var virtioDeviceID: UInt32 { VirtioSound.deviceID }
    public var deviceFeatures: UInt64 { offersControls ? VirtioSound.featureControls : 0 }
    public var queueCount: Int { 4 }
    public var maxQueueSize: Int { 1024 }
    public var configSize: Int { VirtioSound.configSize }
    public var queueGroups: [[Int]] { [[0, 1, 2, 3]] }

    /// Volume and switch for every stream.
    public var controlCount: Int { offersControls ? streams.count * 2 : 0 }
    public var jackCount: Int { hasJacks ? streams.count : 0 }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        var config: [UInt8] = []
        for value in [jackCount, streams.count, streams.count, controlCount] {
            withUnsafeBytes(of: UInt32(value).littleEndian) { config += $0 }
        }
        return Array(config[offset..<offset + count])
    }

    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        SoundGroupHandler(device: self, controls: offersControls && features & VirtioSound.featureControls != 0)
    }

    /// Streams back to idle (their host sides flushed), controls and jacks to their defaults.
    public func reset() {
        state.withLock { state in
            guard state != nil else { return }
            for stream in state!.streams { stream.endpoint?.flush() }
            state = SoundState(streams: streams, jacks: hasJacks)
        }
        published.withLock { $0 = streams.map { _ in StreamStatus() } }
    }

    /// The HDA function node of stream `id`: streams with the same node form one ALSA PCM device in a
    /// Linux guest, so playback N and capture N share device N.
    func node(of id: Int) -> UInt32 {
        UInt32(streams[..<id].filter { $0.direction == streams[id].direction }.count)
    }

    /// Plugs or unplugs jack `id` (from any thread): the guest gets JACK_CONNECTED/DISCONNECTED.
    public func setJack(_ id: Int, connected: Bool) {
        guard id >= 0, id < jackCount else { return }
        pendingJackEvents.withLock { $0.append((id, connected)) }
        waker.withLock { $0?.wake() }
    }

    /// Stream `id`'s state and counters as of its last period.
    public func status(ofStream id: Int) -> StreamStatus { published.withLock { $0[id] } }

    func takeState() -> SoundState? { state.withLock { s in defer { s = nil }; return s } }
    func giveBack(_ returned: SoundState) { state.withLock { $0 = returned } }
}

/// A stream's state and counters, for logs, tests and benchmarks.
public struct StreamStatus: Equatable, Sendable {
    public var state = PCMState.idle
    public var parameters: PCMParameters?
    /// Periods transferred since the stream was prepared.
    public var periods: UInt64 = 0
    /// Playback periods that found fewer bytes than a period held (silence filled the rest), and
    /// capture periods that found no buffer (the samples were lost).
    public var underruns: UInt64 = 0
    /// The largest delay of a period's transfer past its deadline, in nanoseconds.
    public var maxLateness: UInt64 = 0
    public var volume: UInt32 = SoundState.Stream.fullVolume
    public var soundOn = true
}

/// The streams' and jacks' state: what survives a group restart and moves with DEVICE_STATE.
final class SoundState: @unchecked Sendable {  // moved between threads through the device's lock
    final class Stream {
        static let fullVolume: UInt32 = 100
        let spec: StreamSpec
        var state = PCMState.idle
        var parameters: PCMParameters?
        var endpoint: (any StreamEndpoint)?
        var volume = fullVolume
        var soundOn = true
        var periods: UInt64 = 0
        var underruns: UInt64 = 0
        init(spec: StreamSpec) { self.spec = spec }

        /// The software gain: 0 when switched off.
        var gain: Float { soundOn ? Float(volume) / Float(Self.fullVolume) : 0 }
    }
    struct Jack: Equatable {
        var connected = true
        var association: UInt32 = 0
        var sequence: UInt32 = 0
    }
    var streams: [Stream]
    var jacks: [Jack]

    init(streams: [StreamSpec], jacks: Bool) {
        self.streams = streams.map(Stream.init)
        self.jacks = jacks ? streams.map { _ in Jack() } : []
    }
}
