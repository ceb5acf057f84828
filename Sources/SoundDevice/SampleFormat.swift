/// The PCM sample formats this device serves: little-endian, interleaved frames. S24 is virtio's (and
/// ALSA's S24_LE) 24 bits in a 32-bit container, low-aligned.
public enum SampleFormat: String, CaseIterable, Sendable {
    case u8, s16, s24, s32, float

    public var virtio: VirtioSound.Format {
        switch self {
        case .u8: .u8
        case .s16: .s16
        case .s24: .s24
        case .s32: .s32
        case .float: .float
        }
    }

    public init?(virtio: UInt8) {
        guard let format = Self.allCases.first(where: { $0.virtio.rawValue == virtio }) else { return nil }
        self = format
    }

    /// Bytes one sample occupies.
    public var bytesPerSample: Int {
        switch self {
        case .u8: 1
        case .s16: 2
        case .s24, .s32, .float: 4
        }
    }

    /// The bytes of silence for one sample (U8's midpoint is 0x80).
    public var silenceByte: UInt8 { self == .u8 ? 0x80 : 0 }

    /// Scales every sample of `bytes` by `gain` (0...1) in place: software volume. A gain of 0 writes
    /// silence; 1 leaves the bytes alone.
    public func scale(_ bytes: UnsafeMutableRawBufferPointer, by gain: Float) {
        if gain >= 1 { return }
        let count = bytes.count / bytesPerSample
        guard let base = bytes.baseAddress, count > 0 else { return }
        switch self {
        case .u8:
            let p = base.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { p[i] = UInt8(clamping: Int((Float(Int(p[i]) - 128) * gain).rounded()) + 128) }
        case .s16:
            let p = base.assumingMemoryBound(to: Int16.self)
            let g = Int32(gain * 32768)
            for i in 0..<count { p[i] = Int16(littleEndian: Int16(truncatingIfNeeded: (Int32(Int16(littleEndian: p[i])) &* g) >> 15)) }
        case .s24:
            let p = base.assumingMemoryBound(to: Int32.self)
            let g = Int64(gain * 65536)
            for i in 0..<count {
                let v = Int64((Int32(littleEndian: p[i]) << 8) >> 8)  // sign-extend the low 24 bits
                p[i] = Int32(truncatingIfNeeded: (v &* g) >> 16).littleEndian & 0x00ff_ffff
            }
        case .s32:
            let p = base.assumingMemoryBound(to: Int32.self)
            let g = Int64(gain * 65536)
            for i in 0..<count { p[i] = Int32(truncatingIfNeeded: (Int64(Int32(littleEndian: p[i])) &* g) >> 16).littleEndian }
        case .float:
            let p = base.assumingMemoryBound(to: UInt32.self)
            for i in 0..<count { p[i] = (Float(bitPattern: UInt32(littleEndian: p[i])) * gain).bitPattern.littleEndian }
        }
    }
}
