/// Typed message payloads, each with a strict size check on decode. Only this folder knows byte layouts.

/// A payload type with a fixed size on the wire.
public protocol FixedPayload: Sendable {
    static var wireSize: Int { get }
    init(reading r: inout ByteReader)
    func write(to w: inout ByteWriter)
}

extension FixedPayload {
    /// Decodes `bytes`, which must be exactly `wireSize` long.
    public init(decoding bytes: [UInt8], for request: FrontendRequest) throws(VhostUserError) {
        guard bytes.count == Self.wireSize else {
            throw .badPayloadSize(request: request, expected: Self.wireSize, actual: bytes.count)
        }
        var r = ByteReader(bytes)
        self.init(reading: &r)
    }
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        write(to: &w)
        return w.bytes
    }
}

/// A single u64: features, protocol features, status, queue count, ack value.
public struct U64Payload: FixedPayload, Equatable {
    public static let wireSize = 8
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public init(reading r: inout ByteReader) { value = r.u64() }
    public func write(to w: inout ByteWriter) { w.u64(value) }
}

/// `struct vhost_vring_state`: a queue index and a number (size, base or enable flag).
public struct VringState: FixedPayload, Equatable {
    public static let wireSize = 8
    public var index: UInt32
    public var num: UInt32
    public init(index: UInt32, num: UInt32) { self.index = index; self.num = num }
    public init(reading r: inout ByteReader) { index = r.u32(); num = r.u32() }
    public func write(to w: inout ByteWriter) { w.u32(index); w.u32(num) }
}

/// `struct vhost_vring_addr`: ring addresses in the front-end's virtual address space.
public struct VringAddress: FixedPayload, Equatable {
    public static let wireSize = 40
    /// Bit 0 of `flags`: log the used ring's writes at `log`, its guest physical address (VHOST_VRING_F_LOG).
    public static let logFlag: UInt32 = 1
    public var index: UInt32
    public var flags: UInt32
    public var descriptorTable: UInt64
    public var usedRing: UInt64
    public var availableRing: UInt64
    public var log: UInt64
    public init(index: UInt32, flags: UInt32 = 0, descriptorTable: UInt64, usedRing: UInt64, availableRing: UInt64, log: UInt64 = 0) {
        self.index = index; self.flags = flags; self.descriptorTable = descriptorTable
        self.usedRing = usedRing; self.availableRing = availableRing; self.log = log
    }
    public init(reading r: inout ByteReader) {
        index = r.u32(); flags = r.u32(); descriptorTable = r.u64(); usedRing = r.u64(); availableRing = r.u64(); log = r.u64()
    }
    public func write(to w: inout ByteWriter) {
        w.u32(index); w.u32(flags); w.u64(descriptorTable); w.u64(usedRing); w.u64(availableRing); w.u64(log)
    }
}

/// The u64 payload of SET_VRING_KICK/CALL/ERR: queue index in bits 0-7, bit 8 set when no fd is sent.
public struct VringFile: Equatable, Sendable {
    public static let noFileFlag: UInt64 = 1 << 8
    public var index: UInt32
    public var hasFile: Bool
    public init(index: UInt32, hasFile: Bool) { self.index = index; self.hasFile = hasFile }
    public init(_ payload: U64Payload) {
        index = UInt32(payload.value & 0xff)
        hasFile = payload.value & Self.noFileFlag == 0
    }
    public var payload: U64Payload { U64Payload(UInt64(index) | (hasFile ? 0 : Self.noFileFlag)) }
}

/// `VhostUserMemoryRegion`: one region of guest memory shared through a file descriptor.
public struct MemoryRegionDescription: FixedPayload, Equatable {
    public static let wireSize = 32
    public var guestPhysicalAddress: UInt64
    public var size: UInt64
    public var userAddress: UInt64
    public var mmapOffset: UInt64
    public init(guestPhysicalAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress; self.size = size
        self.userAddress = userAddress; self.mmapOffset = mmapOffset
    }
    public init(reading r: inout ByteReader) {
        guestPhysicalAddress = r.u64(); size = r.u64(); userAddress = r.u64(); mmapOffset = r.u64()
    }
    public func write(to w: inout ByteWriter) {
        w.u64(guestPhysicalAddress); w.u64(size); w.u64(userAddress); w.u64(mmapOffset)
    }
}

/// SET_MEM_TABLE payload: a count, padding and 1 to 8 regions (the size is 8 + 32 × count).
public struct MemoryTable: Equatable, Sendable {
    public static let maxRegions = 8
    public var regions: [MemoryRegionDescription]
    public init(regions: [MemoryRegionDescription]) { self.regions = regions }

    public init(decoding bytes: [UInt8]) throws(VhostUserError) {
        guard bytes.count >= 8 else {
            throw .badPayloadSize(request: .setMemTable, expected: 8, actual: bytes.count)
        }
        var r = ByteReader(bytes)
        let count = Int(r.u32())
        _ = r.u32()
        guard count >= 1, count <= Self.maxRegions else { throw .invalidRequest(.setMemTable, "\(count) memory regions (1-\(Self.maxRegions) allowed)") }
        guard bytes.count == 8 + count * MemoryRegionDescription.wireSize else {
            throw .badPayloadSize(request: .setMemTable, expected: 8 + count * MemoryRegionDescription.wireSize, actual: bytes.count)
        }
        regions = (0..<count).map { _ in MemoryRegionDescription(reading: &r) }
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(regions.count)); w.u32(0)
        for region in regions { region.write(to: &w) }
        return w.bytes
    }
}

/// ADD_MEM_REG / REM_MEM_REG payload: 8 bytes of padding and one region.
public struct SingleMemoryRegion: FixedPayload, Equatable {
    public static let wireSize = 40
    public var region: MemoryRegionDescription
    public init(_ region: MemoryRegionDescription) { self.region = region }
    public init(reading r: inout ByteReader) { _ = r.u64(); region = MemoryRegionDescription(reading: &r) }
    public func write(to w: inout ByteWriter) { w.u64(0); region.write(to: &w) }
}

/// GET_CONFIG / SET_CONFIG payload: offset, size, flags and up to 256 bytes of config space.
public struct ConfigPayload: Equatable, Sendable {
    public static let maxSize = 256
    public static let headerSize = 12
    /// Flag bit 1 on SET_CONFIG: the write happens during live migration.
    public static let flagLiveMigration: UInt32 = 1 << 1
    public var offset: UInt32
    public var flags: UInt32
    public var data: [UInt8]
    public init(offset: UInt32, flags: UInt32 = 0, data: [UInt8]) { self.offset = offset; self.flags = flags; self.data = data }

    public init(decoding bytes: [UInt8], for request: FrontendRequest) throws(VhostUserError) {
        guard bytes.count >= Self.headerSize else {
            throw .badPayloadSize(request: request, expected: Self.headerSize, actual: bytes.count)
        }
        var r = ByteReader(bytes)
        offset = r.u32()
        let size = Int(r.u32())
        flags = r.u32()
        guard size <= Self.maxSize else { throw .invalidRequest(request, "config size \(size) exceeds \(Self.maxSize)") }
        guard bytes.count == Self.headerSize + size else {
            throw .badPayloadSize(request: request, expected: Self.headerSize + size, actual: bytes.count)
        }
        data = r.bytes(size)
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u32(offset); w.u32(UInt32(data.count)); w.u32(flags); w.append(data)
        return w.bytes
    }
}

/// GET_INFLIGHT_FD / SET_INFLIGHT_FD payload (`VhostUserInflight`, 24 bytes with its tail padding).
public struct InflightDescription: FixedPayload, Equatable {
    public static let wireSize = 24
    public var mmapSize: UInt64
    public var mmapOffset: UInt64
    public var queueCount: UInt16
    public var queueSize: UInt16
    public init(mmapSize: UInt64, mmapOffset: UInt64, queueCount: UInt16, queueSize: UInt16) {
        self.mmapSize = mmapSize; self.mmapOffset = mmapOffset; self.queueCount = queueCount; self.queueSize = queueSize
    }
    public init(reading r: inout ByteReader) {
        mmapSize = r.u64(); mmapOffset = r.u64(); queueCount = r.u16(); queueSize = r.u16()
        _ = r.u32()
    }
    public func write(to w: inout ByteWriter) { w.u64(mmapSize); w.u64(mmapOffset); w.u16(queueCount); w.u16(queueSize); w.u32(0) }
}

/// SET_LOG_BASE payload (`VhostUserLog`).
public struct LogDescription: FixedPayload, Equatable {
    public static let wireSize = 16
    public var mmapSize: UInt64
    public var mmapOffset: UInt64
    public init(mmapSize: UInt64, mmapOffset: UInt64) { self.mmapSize = mmapSize; self.mmapOffset = mmapOffset }
    public init(reading r: inout ByteReader) { mmapSize = r.u64(); mmapOffset = r.u64() }
    public func write(to w: inout ByteWriter) { w.u64(mmapSize); w.u64(mmapOffset) }
}

/// SET_DEVICE_STATE_FD payload: the transfer's direction (0: save, 1: load) and migration phase (0: stopped).
public struct DeviceStateTransferParameters: FixedPayload, Equatable {
    public static let wireSize = 8
    public var direction: UInt32
    public var phase: UInt32
    public init(direction: UInt32, phase: UInt32) { self.direction = direction; self.phase = phase }
    public init(reading r: inout ByteReader) { direction = r.u32(); phase = r.u32() }
    public func write(to w: inout ByteWriter) { w.u32(direction); w.u32(phase) }
}
