import VhostUserKit

/// `struct virtio_vsock_hdr`: the 44-byte header before every packet's payload, little-endian.
public struct VsockHeader: Equatable, Sendable {
    public var srcCID: UInt64 = 0
    public var dstCID: UInt64 = 0
    public var srcPort: UInt32 = 0
    public var dstPort: UInt32 = 0
    public var length: UInt32 = 0
    public var type: UInt16 = 0
    public var op: UInt16 = 0
    public var flags: UInt32 = 0
    public var bufAlloc: UInt32 = 0
    public var fwdCnt: UInt32 = 0

    public init() {}

    public init(srcCID: UInt64, dstCID: UInt64, srcPort: UInt32, dstPort: UInt32, type: VirtioVsock.SocketType,
                op: VirtioVsock.Op, flags: UInt32 = 0, length: UInt32 = 0, bufAlloc: UInt32 = 0, fwdCnt: UInt32 = 0) {
        self.srcCID = srcCID
        self.dstCID = dstCID
        self.srcPort = srcPort
        self.dstPort = dstPort
        self.type = type.rawValue
        self.op = op.rawValue
        self.flags = flags
        self.length = length
        self.bufAlloc = bufAlloc
        self.fwdCnt = fwdCnt
    }

    /// Reads a header from the front of a chain's readable bytes; nil when fewer than 44 bytes remain.
    public init?(reading reader: inout ChainReader) {
        guard let srcCID = reader.read(UInt64.self), let dstCID = reader.read(UInt64.self),
              let srcPort = reader.read(UInt32.self), let dstPort = reader.read(UInt32.self),
              let length = reader.read(UInt32.self), let type = reader.read(UInt16.self),
              let op = reader.read(UInt16.self), let flags = reader.read(UInt32.self),
              let bufAlloc = reader.read(UInt32.self), let fwdCnt = reader.read(UInt32.self) else { return nil }
        self.srcCID = srcCID
        self.dstCID = dstCID
        self.srcPort = srcPort
        self.dstPort = dstPort
        self.length = length
        self.type = type
        self.op = op
        self.flags = flags
        self.bufAlloc = bufAlloc
        self.fwdCnt = fwdCnt
    }

    /// Writes the header into a chain's writable bytes; false when they hold fewer than 44 bytes.
    @discardableResult
    public func write(to writer: inout ChainWriter) -> Bool {
        writer.write(srcCID) && writer.write(dstCID) && writer.write(srcPort) && writer.write(dstPort)
            && writer.write(length) && writer.write(type) && writer.write(op) && writer.write(flags)
            && writer.write(bufAlloc) && writer.write(fwdCnt)
    }

    /// The header as bytes (tests, the fuzz target).
    public var bytes: [UInt8] {
        var w = ByteWriter()
        w.u64(srcCID); w.u64(dstCID); w.u32(srcPort); w.u32(dstPort); w.u32(length)
        w.u16(type); w.u16(op); w.u32(flags); w.u32(bufAlloc); w.u32(fwdCnt)
        return w.bytes
    }

    /// Parses `bytes` (at least 44); nil when shorter.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= VirtioVsock.headerSize else { return nil }
        var r = ByteReader(bytes)
        srcCID = r.u64(); dstCID = r.u64(); srcPort = r.u32(); dstPort = r.u32(); length = r.u32()
        type = r.u16(); op = r.u16(); flags = r.u32(); bufAlloc = r.u32(); fwdCnt = r.u32()
    }

    public var socketType: VirtioVsock.SocketType? { VirtioVsock.SocketType(rawValue: type) }
    public var operation: VirtioVsock.Op? { VirtioVsock.Op(rawValue: op) }
}
