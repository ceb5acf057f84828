/// A device's state beyond its rings (open connections, stream positions, line settings), as
/// DEVICE_STATE moves it between two daemons for live migration and snapshots. The device picks a
/// four-character `kind` and a `version` and writes its fields into `payload`; the framing adds a
/// magic number, the length and a CRC-32, so that a stream from a hostile, damaged or older source
/// is refused before any of it is applied.
public struct DeviceState: Equatable, Sendable {
    /// Which device wrote it, e.g. "vsck"; `load` refuses another device's state.
    public var kind: String
    /// The version of the payload's format; a device reads the versions it knows.
    public var version: UInt16
    /// The device-defined fields (written with `ByteWriter`, read with `DeviceStateReader`).
    public var payload: [UInt8]

    public init(kind: String, version: UInt16, payload: [UInt8]) {
        precondition(kind.utf8.count == 4, "a state kind is four ASCII characters")
        self.kind = kind
        self.version = version
        self.payload = payload
    }

    static let magic: [UInt8] = Array("VUDS".utf8)
    /// The largest payload accepted, so a hostile length cannot make the daemon allocate without bound.
    public static let maximumPayload = 64 << 20

    /// The framed bytes: magic, kind, version, payload length, payload, CRC-32 of all before it.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.append(Self.magic)
        w.append(Array(kind.utf8))
        w.u16(version)
        w.u32(UInt32(payload.count))
        w.append(payload)
        w.u32(CRC32.checksum(w.bytes))
        return w.bytes
    }

    /// Decodes framed bytes, checking magic, length and checksum (not the payload: the device does).
    public init(decoding bytes: [UInt8]) throws(DeviceStateError) {
        let header = 4 + 4 + 2 + 4
        guard bytes.count >= header + 4 else { throw .truncated }
        guard Array(bytes[0..<4]) == Self.magic else { throw .notDeviceState }
        var r = ByteReader(Array(bytes[4..<header]))
        let kind = String(decoding: r.bytes(4), as: UTF8.self)
        let version = r.u16()
        let length = Int(r.u32())
        guard length <= Self.maximumPayload else { throw .tooLarge(length) }
        guard bytes.count == header + length + 4 else {
            throw bytes.count < header + length + 4 ? .truncated : .trailingBytes
        }
        var sum = ByteReader(Array(bytes[(header + length)...]))
        guard sum.u32() == CRC32.checksum(bytes[0..<(header + length)]) else { throw .checksumMismatch }
        self.kind = kind
        self.version = version
        self.payload = Array(bytes[header..<(header + length)])
    }

    /// Checks that this is `kind`'s state in one of `versions`, before a device reads the payload.
    public func expect(kind: String, versions: ClosedRange<UInt16>) throws(DeviceStateError) {
        guard self.kind == kind else { throw .wrongDevice(found: self.kind, expected: kind) }
        guard versions.contains(version) else { throw .unsupportedVersion(version) }
    }
}

/// Why a device state was refused. Nothing of a refused state is applied.
public enum DeviceStateError: Error, Equatable, Sendable {
    case notDeviceState
    case truncated
    case trailingBytes
    case tooLarge(Int)
    case checksumMismatch
    case wrongDevice(found: String, expected: String)
    case unsupportedVersion(UInt16)
    /// The device has no state to load, but a state arrived.
    case unexpectedState
    /// A field is out of range or inconsistent; the text says which.
    case invalid(String)
}

/// Reads a device state's payload, throwing instead of trapping on a short or inconsistent one.
public struct DeviceStateReader {
    private var reader: ByteReader
    public init(_ state: DeviceState) { reader = ByteReader(state.payload) }

    private mutating func need(_ n: Int) throws(DeviceStateError) {
        guard n >= 0, reader.remaining >= n else { throw .truncated }
    }
    public mutating func u8() throws(DeviceStateError) -> UInt8 { try need(1); return reader.bytes(1)[0] }
    public mutating func u16() throws(DeviceStateError) -> UInt16 { try need(2); return reader.u16() }
    public mutating func u32() throws(DeviceStateError) -> UInt32 { try need(4); return reader.u32() }
    public mutating func u64() throws(DeviceStateError) -> UInt64 { try need(8); return reader.u64() }
    public mutating func bool() throws(DeviceStateError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        case let v: throw .invalid("boolean field is \(v)")
        }
    }
    /// `count` raw bytes; the count is checked against what is left before anything is allocated.
    public mutating func bytes(_ count: Int) throws(DeviceStateError) -> [UInt8] {
        try need(count)
        return reader.bytes(count)
    }
    /// A u32 element count, refused when it exceeds `limit`.
    public mutating func count(max limit: Int) throws(DeviceStateError) -> Int {
        let n = Int(try u32())
        guard n <= limit else { throw .invalid("count \(n) exceeds \(limit)") }
        return n
    }
    /// Ends reading: bytes left over mean the state is not what its version says.
    public func finish() throws(DeviceStateError) {
        guard reader.remaining == 0 else { throw .trailingBytes }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), for state framing on the control path.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
