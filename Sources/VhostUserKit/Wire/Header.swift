/// The 12-byte header that starts every vhost-user message: request, flags, payload size (little endian).
public struct MessageHeader: Equatable, Sendable {
    public static let size = 12
    /// The largest payload the daemon accepts. The biggest legitimate one is a config message
    /// (12 + 256 bytes); anything far beyond is a broken or hostile peer.
    public static let maxPayloadSize = 4096

    public var request: UInt32
    public var flags: Flags
    public var size: UInt32

    public init(request: UInt32, flags: Flags, size: UInt32) {
        self.request = request
        self.flags = flags
        self.size = size
    }

    /// Header flag bits: the protocol version in bits 0-1 (always 1), REPLY and NEED_REPLY.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let version1 = Flags(rawValue: 0x1)
        public static let reply = Flags(rawValue: 0x4)
        public static let needReply = Flags(rawValue: 0x8)
        /// The version field, bits 0-1.
        public var version: UInt32 { rawValue & 0x3 }
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u32(request)
        w.u32(flags.rawValue)
        w.u32(size)
        return w.bytes
    }

    public init(decoding bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        request = bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian
        flags = Flags(rawValue: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
        size = bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
    }
}
