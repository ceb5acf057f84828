/// Little-endian encoding of payload fields (control path only).
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func append(_ b: [UInt8]) { bytes += b }
    public mutating func zeroes(_ n: Int) { bytes += repeatElement(0, count: n) }
}

/// Little-endian decoding of a payload whose size has already been checked.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var remaining: Int { bytes.count - offset }

    private mutating func read<T: FixedWidthInteger>(_: T.Type) -> T {
        precondition(remaining >= MemoryLayout<T>.size, "payload size is checked before decoding")
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }
    public mutating func u16() -> UInt16 { read(UInt16.self) }
    public mutating func u32() -> UInt32 { read(UInt32.self) }
    public mutating func u64() -> UInt64 { read(UInt64.self) }
    public mutating func bytes(_ n: Int) -> [UInt8] {
        precondition(remaining >= n)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
}
