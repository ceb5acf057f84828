#if canImport(Glibc)
import Glibc
#endif

/// RIFF/WAVE: the header this device writes (PCM, IEEE float, or WAVE_FORMAT_EXTENSIBLE for S24 in
/// 32-bit containers) and the one it reads back (the `fmt ` and `data` chunks of any such file).
public enum WAVFile {
    public struct Layout: Equatable, Sendable {
        public var format: SampleFormat
        public var channels: Int
        public var rate: UInt32
        public init(format: SampleFormat, channels: Int, rate: UInt32) {
            self.format = format
            self.channels = channels
            self.rate = rate
        }
    }

    /// The header for `dataBytes` bytes of samples in `layout`.
    public static func header(_ layout: Layout, dataBytes: UInt32) -> [UInt8] {
        var w: [UInt8] = []
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { w += $0 } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { w += $0 } }
        let extensible = layout.format == .s24
        let fmtSize: UInt32 = extensible ? 40 : 16
        let container = UInt16(layout.format.bytesPerSample * 8)
        w += Array("RIFF".utf8); u32(4 + 8 + fmtSize + 8 + dataBytes); w += Array("WAVE".utf8)
        w += Array("fmt ".utf8); u32(fmtSize)
        u16(extensible ? 0xfffe : layout.format == .float ? 3 : 1)
        u16(UInt16(layout.channels)); u32(layout.rate)
        u32(layout.rate * UInt32(layout.channels * layout.format.bytesPerSample))
        u16(UInt16(layout.channels * layout.format.bytesPerSample)); u16(container)
        if extensible {
            u16(22); u16(24); u32(0)
            // KSDATAFORMAT_SUBTYPE_PCM: 00000001-0000-0010-8000-00aa00389b71.
            w += [1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]
        }
        w += Array("data".utf8); u32(dataBytes)
        return w
    }

    /// Parses a WAV file's bytes: its layout and where its samples are.
    public static func parse(_ bytes: [UInt8]) throws(SoundBackendError) -> (layout: Layout, data: Range<Int>) {
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        guard bytes.count >= 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8) else {
            throw SoundBackendError("not a RIFF/WAVE file")
        }
        var offset = 12
        var layout: Layout?
        while offset + 8 <= bytes.count {
            let size = u32(offset + 4)
            let body = offset + 8
            if bytes[offset..<offset + 4].elementsEqual("fmt ".utf8) {
                guard size >= 16, body + 16 <= bytes.count else { throw SoundBackendError("a short fmt chunk") }
                var tag = u16(body)
                let channels = u16(body + 2), rate = u32(body + 4), bits = u16(body + 14)
                var valid = bits
                if tag == 0xfffe, size >= 40, body + 26 <= bytes.count {
                    valid = u16(body + 18)
                    tag = u16(body + 24)
                }
                let format: SampleFormat? = switch (tag, bits, valid) {
                case (1, 8, _): .u8
                case (1, 16, _): .s16
                case (1, 32, 24): .s24
                case (1, 32, 32): .s32
                case (3, 32, _): .float
                default: nil
                }
                guard let format, (1...8).contains(channels), rate > 0 else {
                    throw SoundBackendError("an unsupported WAV format (tag \(tag), \(bits) bits, \(channels) channels)")
                }
                layout = Layout(format: format, channels: channels, rate: UInt32(rate))
            } else if bytes[offset..<offset + 4].elementsEqual("data".utf8) {
                guard let layout else { throw SoundBackendError("a data chunk before the fmt chunk") }
                let end = min(bytes.count, body + size)
                let frame = layout.channels * layout.format.bytesPerSample
                return (layout, body..<(body + (end - body) / frame * frame))
            }
            offset = body + size + (size & 1)
        }
        throw SoundBackendError("no data chunk")
    }

    /// Reads a whole file (at most `limit` bytes).
    public static func read(path: String, limit: Int = 256 << 20) throws(SoundBackendError) -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SoundBackendError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw SoundBackendError("cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            guard bytes.count <= limit else { throw SoundBackendError("\(path) is larger than \(limit) bytes") }
        }
    }
}
