/// Converts interleaved samples between formats, channel counts and rates, for a host side that
/// lacks the guest's format: samples go through Float (exact for U8, S16 and S24; S32 keeps 24 bits),
/// channels are mapped by position order (extra ones dropped, missing ones copied from the last),
/// and rates are converted by linear interpolation (no low-pass filter: fine for speech and tests,
/// audible aliasing when downsampling content above the new Nyquist frequency).
public enum SampleConverter {
    /// Sample `index` of `bytes` in `format` as a Float in -1...1.
    @inline(__always)
    static func decode(_ bytes: UnsafeRawBufferPointer, _ index: Int, _ format: SampleFormat) -> Float {
        switch format {
        case .u8: return (Float(bytes[index]) - 128) / 128
        case .s16: return Float(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 2, as: Int16.self))) / 32768
        case .s24:
            let raw = Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 4, as: Int32.self))
            return Float((raw << 8) >> 8) / 8_388_608
        case .s32: return Float(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 4, as: Int32.self))) / 2_147_483_648
        case .float: return Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
        }
    }

    /// Stores `value` (clamped to -1...1) as sample `index` of `bytes` in `format`.
    @inline(__always)
    static func encode(_ value: Float, _ bytes: UnsafeMutableRawBufferPointer, _ index: Int, _ format: SampleFormat) {
        let v = max(-1, min(1, value))
        switch format {
        case .u8: bytes[index] = UInt8(clamping: Int((v * 128).rounded()) + 128)
        case .s16: bytes.storeBytes(of: Int16(clamping: Int((v * 32768).rounded())).littleEndian, toByteOffset: index * 2, as: Int16.self)
        case .s24: bytes.storeBytes(of: (Int32(clamping: Int((v * 8_388_608).rounded()).clamped(-8_388_608, 8_388_607)) & 0xff_ffff).littleEndian,
                                    toByteOffset: index * 4, as: Int32.self)
        case .s32: bytes.storeBytes(of: Int32(clamping: Int64((Double(v) * 2_147_483_648).rounded())).littleEndian, toByteOffset: index * 4, as: Int32.self)
        case .float: bytes.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
        }
    }

    /// `source` in layout `from`, converted to layout `to` (a copy when they are equal).
    public static func convert(_ source: [UInt8], from: WAVFile.Layout, to: WAVFile.Layout) -> [UInt8] {
        if from == to { return source }
        let inFrames = source.count / (from.channels * from.format.bytesPerSample)
        let outFrames = Int((UInt64(inFrames) * UInt64(to.rate) / UInt64(from.rate)))
        var out = [UInt8](repeating: 0, count: outFrames * to.channels * to.format.bytesPerSample)
        source.withUnsafeBytes { input in
            out.withUnsafeMutableBytes { output in
                for frame in 0..<outFrames {
                    let position = Double(frame) * Double(from.rate) / Double(to.rate)
                    let i0 = min(Int(position), inFrames - 1), i1 = min(i0 + 1, inFrames - 1)
                    let t = Float(position - Double(i0))
                    for channel in 0..<to.channels {
                        let c = min(channel, from.channels - 1)
                        let a = decode(input, i0 * from.channels + c, from.format)
                        let b = decode(input, i1 * from.channels + c, from.format)
                        encode(a + (b - a) * t, output, frame * to.channels + channel, to.format)
                    }
                }
            }
        }
        return out
    }
}

extension Int {
    fileprivate func clamped(_ low: Int, _ high: Int) -> Int { Swift.max(low, Swift.min(high, self)) }
}
