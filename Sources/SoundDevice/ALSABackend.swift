import CALSA
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// `alsa`: each stream on a host PCM through alsa-lib (`--alsa-playback`/`--alsa-capture` name it:
/// `default`, `hw:0,0`, `plughw:1`...). The group's worker never calls ALSA: a stream's periods pass
/// through a bounded ring of period slots to a backend thread that does the blocking
/// `snd_pcm_writei`/`snd_pcm_readi`. The host PCM gets the guest's format, channels and rate when it
/// takes them; otherwise S16 at the nearest rate, converted by `SampleConverter` on the backend thread.
/// `configuration` (ALSA configuration text) replaces the system's, e.g. for a test's `file` PCM.
public final class ALSABackend: SoundBackend {
    public let playbackDevice: String
    public let captureDevice: String
    private let configuration: String?

    public init(playback: String, capture: String, configuration: String? = nil) {
        playbackDevice = playback
        captureDevice = capture
        self.configuration = configuration
        // The system's configuration files are read now, before the daemon's sandbox.
        if configuration == nil { _ = snd_config_update() }
    }

    public var name: String { "alsa" }

    public func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint {
        try ALSAEndpoint(device: spec.direction == .output ? playbackDevice : captureDevice, capture: spec.direction == .input,
                         parameters: parameters, configuration: configuration)
    }
}

/// One stream's host side: its `ALSAStream` runs until the endpoint goes.
final class ALSAEndpoint: StreamEndpoint {
    private let stream: ALSAStream

    init(device: String, capture: Bool, parameters: PCMParameters, configuration: String?) throws(SoundBackendError) {
        stream = try ALSAStream(device: device, capture: capture, parameters: parameters, configuration: configuration)
    }

    deinit { stream.stop() }

    func play(_ period: UnsafeRawBufferPointer) { stream.play(period) }
    func capture(into period: UnsafeMutableRawBufferPointer) { stream.capture(into: period) }
    var delayBytes: Int { stream.delayBytes }
    func flush() { stream.drain() }
}

/// A host PCM, its backend thread (which holds it while it runs) and the ring between them.
final class ALSAStream: @unchecked Sendable {  // ring and flags are locked or atomic; the PCM is the thread's
    private let pcm: OpaquePointer
    private let capture: Bool
    private let periodBytes: Int
    private let guestLayout: WAVFile.Layout
    private let hostLayout: WAVFile.Layout
    private let hostPeriodFrames: Int
    /// The worker's side and the thread's side meet here.
    private let ring: PeriodRing
    /// Semaphore eventfd: playback, periods queued; capture, free slots.
    private let tokens: EventFD
    private let stopping = Atomic<Bool>(false)
    /// Set by `drain()`: once the ring is empty, the thread plays out the host buffer.
    private let draining = Atomic<Bool>(false)
    private var thread: pthread_t?
    static let slots = 4

    init(device: String, capture: Bool, parameters: PCMParameters, configuration: String?) throws(SoundBackendError) {
        self.capture = capture
        periodBytes = Int(parameters.periodBytes)
        guestLayout = WAVFile.Layout(format: parameters.format, channels: Int(parameters.channels), rate: parameters.rate)
        var handle: OpaquePointer?
        var status: Int32
        if let configuration {
            var input: OpaquePointer?
            var config: OpaquePointer?
            status = snd_input_buffer_open(&input, configuration, configuration.utf8.count)
            if status >= 0 { status = snd_config_top(&config) }
            if status >= 0 { status = snd_config_load(config, input) }
            if input != nil { snd_input_close(input) }
            if status >= 0 { status = snd_pcm_open_lconf(&handle, device, capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, 0, config) }
            if config != nil { snd_config_delete(config) }
        } else {
            status = snd_pcm_open(&handle, device, capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, 0)
        }
        guard status >= 0, let handle else { throw Self.error("cannot open \(device)", status) }
        pcm = handle
        do {
            (hostLayout, hostPeriodFrames) = try Self.configure(handle, guest: guestLayout, periodFrames: parameters.periodFrames)
        } catch {
            snd_pcm_close(handle)
            throw error
        }
        ring = PeriodRing(slots: Self.slots, periodBytes: Int(parameters.periodBytes))
        do {
            tokens = try EventFD(semaphore: true)
        } catch {
            snd_pcm_close(handle)
            throw SoundBackendError("eventfd: \(error)")
        }
        if capture { for _ in 0..<Self.slots { _ = tokens.signal() } }
        let box = Unmanaged.passRetained(self)
        var created = pthread_t()
        guard pthread_create(&created, nil, { raw in
            Unmanaged<ALSAStream>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque()) == 0 else {
            box.release()
            snd_pcm_close(handle)
            throw SoundBackendError("cannot start the alsa thread")
        }
        thread = created
    }

    /// The guest's format when the PCM takes it, else S16 with the channels and the nearest rate it has.
    private static func configure(_ pcm: OpaquePointer, guest: WAVFile.Layout, periodFrames: Int) throws(SoundBackendError) -> (WAVFile.Layout, Int) {
        var hw: OpaquePointer?
        guard snd_pcm_hw_params_malloc(&hw) >= 0, let hw else { throw SoundBackendError("snd_pcm_hw_params_malloc failed") }
        defer { snd_pcm_hw_params_free(hw) }
        _ = snd_pcm_hw_params_any(pcm, hw)
        _ = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)
        var layout = guest
        if snd_pcm_hw_params_set_format(pcm, hw, alsaFormat(guest.format)) < 0 {
            layout.format = .s16
            let status = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE)
            guard status >= 0 else { throw error("neither \(guest.format) nor s16", status) }
        }
        var channels = UInt32(guest.channels)
        var status = snd_pcm_hw_params_set_channels_near(pcm, hw, &channels)
        guard status >= 0 else { throw error("\(guest.channels) channels", status) }
        layout.channels = Int(channels)
        var rate = guest.rate
        status = snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, nil)
        guard status >= 0 else { throw error("rate \(guest.rate)", status) }
        layout.rate = rate
        var frames = snd_pcm_uframes_t(max(1, periodFrames * Int(rate) / Int(guest.rate)))
        _ = snd_pcm_hw_params_set_period_size_near(pcm, hw, &frames, nil)
        var buffer = frames * snd_pcm_uframes_t(slots)
        _ = snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &buffer)
        status = snd_pcm_hw_params(pcm, hw)
        guard status >= 0 else { throw error("hardware parameters", status) }
        status = snd_pcm_prepare(pcm)
        guard status >= 0 else { throw error("prepare", status) }
        return (layout, Int(frames))
    }

    static func alsaFormat(_ format: SampleFormat) -> snd_pcm_format_t {
        switch format {
        case .u8: SND_PCM_FORMAT_U8
        case .s16: SND_PCM_FORMAT_S16_LE
        case .s24: SND_PCM_FORMAT_S24_LE
        case .s32: SND_PCM_FORMAT_S32_LE
        case .float: SND_PCM_FORMAT_FLOAT_LE
        }
    }

    static func error(_ what: String, _ status: Int32) -> SoundBackendError {
        SoundBackendError("alsa: \(what): \(String(cString: snd_strerror(status)))")
    }

    /// Ends the thread (a playback PCM plays out what it holds first) and closes the PCM.
    func stop() {
        stopping.store(true, ordering: .releasing)
        _ = tokens.signal()
        if let thread { pthread_join(thread, nil) }
        snd_pcm_close(pcm)
    }

    // MARK: The worker's side (never blocks)

    /// Queues a period for the thread; when the ring is full the period is dropped.
    func play(_ period: UnsafeRawBufferPointer) {
        if ring.push(period) { signal() }
    }

    /// Takes a captured period; silence when the thread has none yet.
    func capture(into period: UnsafeMutableRawBufferPointer) {
        if ring.pop(into: period) { signal() } else { period.initializeMemory(as: UInt8.self, repeating: guestLayout.format.silenceByte) }
    }

    var delayBytes: Int { ring.count * periodBytes }

    /// Playback: the thread plays out what the ring and the host buffer hold (snd_pcm_drain, on the
    /// thread), then the PCM is ready for more (PCM_RELEASE: what was played is heard or written).
    func drain() {
        guard !capture else { return }
        draining.store(true, ordering: .releasing)
        signal()
    }

    private func signal() { _ = tokens.signal() }

    /// Blocks until a token arrives; false once the endpoint is going away.
    private func takeToken() -> Bool {
        var token: UInt64 = 0
        while !stopping.load(ordering: .acquiring) {
            var pfd = pollfd(fd: tokens.rawValue, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, -1)
            if read(tokens.rawValue, &token, 8) == 8 { return !stopping.load(ordering: .acquiring) }
        }
        return false
    }

    // MARK: The thread's side

    private func run() {
        var period = [UInt8](repeating: 0, count: periodBytes)
        while takeToken() {
            if capture {
                let host = transfer(nil)
                let guest = SampleConverter.convert(host, from: hostLayout, to: guestLayout)
                // A token is a free slot: the push finds room.
                _ = guest.withUnsafeBytes { ring.push($0) }
            } else {
                if period.withUnsafeMutableBytes({ ring.pop(into: $0) }) {
                    _ = transfer(SampleConverter.convert(period, from: guestLayout, to: hostLayout))
                } else if draining.exchange(false, ordering: .acquiringAndReleasing) {
                    // drain()'s token arrives after every period queued before it.
                    _ = snd_pcm_drain(pcm)
                    _ = snd_pcm_prepare(pcm)
                }
            }
        }
        // What was written plays out (at most the host buffer: four periods) before the PCM closes.
        if !capture { _ = snd_pcm_drain(pcm) }
    }

    /// Writes `samples` (playback) or reads a host period (capture), recovering from x-runs.
    private func transfer(_ samples: [UInt8]?) -> [UInt8] {
        let frameBytes = hostLayout.channels * hostLayout.format.bytesPerSample
        var buffer = samples ?? [UInt8](repeating: 0, count: hostPeriodFrames * frameBytes)
        let frames = buffer.count / frameBytes
        var done = 0
        while done < frames && !stopping.load(ordering: .relaxed) {
            let n = buffer.withUnsafeMutableBytes { raw in
                capture ? snd_pcm_readi(pcm, raw.baseAddress! + done * frameBytes, snd_pcm_uframes_t(frames - done))
                    : snd_pcm_writei(pcm, raw.baseAddress! + done * frameBytes, snd_pcm_uframes_t(frames - done))
            }
            if n < 0 {
                if snd_pcm_recover(pcm, Int32(n), 1) < 0 { break }
                continue
            }
            done += Int(n)
        }
        return buffer
    }
}
