/// Reads structured values from a fuzzer's input, little endian. Past the end every read yields zeroes,
/// so any input decodes to something; seeds are written in the same order with the kit's `ByteWriter`.
public struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var isExhausted: Bool { offset >= bytes.count }

    public mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    public mutating func bool() -> Bool { u8() & 1 != 0 }

    /// A value in 0..<count (count at most 256).
    public mutating func below(_ count: Int) -> Int { Int(u8()) % count }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, bytes.count - offset))
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
}
