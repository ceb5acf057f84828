#if canImport(Glibc)
import Glibc
#endif

/// `wav`: playback stream N is recorded to `<directory>/playback-N.wav` (one file for the daemon's
/// life while the format stays the same: each PREPARE appends, a new format starts the file over;
/// the header's sizes are brought up to date at every RELEASE); capture streams read `captureFile`
/// in a loop, converted to the stream's format at PREPARE (`SampleConverter`). Files are opened and
/// read when the backend is made, before the daemon enters its sandbox.
public final class WAVBackend: SoundBackend {
    public let directory: String?
    private let writers: [Int: WAVWriter]
    private let capture: (layout: WAVFile.Layout, samples: [UInt8])?

    /// Creates the recordings of `playbackStreams` in `directory` and reads `captureFile`.
    public init(directory: String?, captureFile: String?, playbackStreams: [Int]) throws(SoundBackendError) {
        self.directory = directory
        var writers: [Int: WAVWriter] = [:]
        if let directory {
            for id in playbackStreams { writers[id] = try WAVWriter(path: "\(directory)/playback-\(id).wav") }
        }
        self.writers = writers
        if let captureFile {
            let bytes = try WAVFile.read(path: captureFile)
            let (layout, data) = try WAVFile.parse(bytes)
            guard !data.isEmpty else { throw SoundBackendError("\(captureFile) holds no samples") }
            capture = (layout, Array(bytes[data]))
        } else {
            capture = nil
        }
    }

    public var name: String { "wav" }

    /// The recording of playback stream `id`.
    public func path(ofStream id: Int) -> String? { directory.map { "\($0)/playback-\(id).wav" } }

    public func open(stream id: Int, spec: StreamSpec, parameters: PCMParameters) throws -> any StreamEndpoint {
        let layout = WAVFile.Layout(format: parameters.format, channels: Int(parameters.channels), rate: parameters.rate)
        if spec.direction == .input {
            guard let capture else { return NullEndpoint(silence: parameters.format.silenceByte) }
            let samples = SampleConverter.convert(capture.samples, from: capture.layout, to: layout)
            guard !samples.isEmpty else { throw SoundBackendError("the capture file converts to no samples") }
            return WAVLoop(samples: samples)
        }
        guard let writer = writers[id] else { return NullEndpoint(silence: 0) }
        writer.use(layout)
        return writer
    }
}

/// A WAV file being recorded.
final class WAVWriter: StreamEndpoint, @unchecked Sendable {  // used by one group's worker at a time
    private(set) var layout: WAVFile.Layout?
    private let fd: Int32
    private var dataBytes: UInt32 = 0

    init(path: String) throws(SoundBackendError) {
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SoundBackendError("cannot create \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Records in `layout` from now on: appends when it is the file's, starts the file over otherwise.
    func use(_ layout: WAVFile.Layout) {
        guard layout != self.layout else { return }
        self.layout = layout
        dataBytes = 0
        _ = ftruncate(fd, 0)
        writeHeader()
        // Samples follow the header; the header is rewritten in place (pwrite) as they grow.
        lseek(fd, off_t(WAVFile.header(layout, dataBytes: 0).count), SEEK_SET)
    }

    func play(_ period: UnsafeRawBufferPointer) {
        var done = 0
        while done < period.count {
            let n = write(fd, period.baseAddress! + done, period.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
        dataBytes &+= UInt32(done)
    }

    func capture(into period: UnsafeMutableRawBufferPointer) {}

    func flush() { writeHeader() }

    private func writeHeader() {
        guard let layout else { return }
        let header = WAVFile.header(layout, dataBytes: dataBytes)
        _ = header.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
}

/// A capture source that plays its samples over and over.
final class WAVLoop: StreamEndpoint {
    private let samples: [UInt8]
    private var position = 0

    init(samples: [UInt8]) { self.samples = samples }

    func play(_ period: UnsafeRawBufferPointer) {}

    func capture(into period: UnsafeMutableRawBufferPointer) {
        var filled = 0
        samples.withUnsafeBytes { source in
            while filled < period.count {
                let n = min(period.count - filled, source.count - position)
                (period.baseAddress! + filled).copyMemory(from: source.baseAddress! + position, byteCount: n)
                filled += n
                position = (position + n) % source.count
            }
        }
    }
}
