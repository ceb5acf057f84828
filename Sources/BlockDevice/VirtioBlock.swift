/// virtio-blk as the spec defines it (virtio 1.2, 5.2): feature bits, request types, status values and
/// the config space layout. Nothing else in the device knows these numbers.
public enum VirtioBlock {
    public static let deviceID: UInt32 = 2
    /// Sector size of the protocol: capacities and request sectors are always in 512-byte units.
    public static let sectorSize = 512
    public static let idLength = 20
    public static let headerSize = 16
    /// One DISCARD / WRITE_ZEROES range: sector (u64), sector count (u32), flags (u32).
    public static let rangeSize = 16
    public static let rangeFlagUnmap: UInt32 = 1

    public enum Feature {
        public static let sizeMax: UInt64 = 1 << 1
        public static let segMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let blockSize: UInt64 = 1 << 6
        public static let flush: UInt64 = 1 << 9
        public static let topology: UInt64 = 1 << 10
        public static let configWCE: UInt64 = 1 << 11
        public static let multiQueue: UInt64 = 1 << 12
        public static let discard: UInt64 = 1 << 13
        public static let writeZeroes: UInt64 = 1 << 14
    }

    public enum RequestType: UInt32 {
        case read = 0
        case write = 1
        case flush = 4
        case getID = 8
        case discard = 11
        case writeZeroes = 13
    }

    public enum Status: UInt8 {
        case ok = 0
        case ioError = 1
        case unsupported = 2
    }

    /// Offsets in `struct virtio_blk_config`.
    public enum ConfigOffset {
        public static let capacity = 0
        public static let sizeMax = 8
        public static let segMax = 12
        public static let blockSize = 20
        public static let physicalBlockExponent = 24
        public static let alignmentOffset = 25
        public static let minIOSize = 26
        public static let optIOSize = 28
        public static let writeback = 32
        public static let numQueues = 34
        public static let maxDiscardSectors = 36
        public static let maxDiscardSegments = 40
        public static let discardSectorAlignment = 44
        public static let maxWriteZeroesSectors = 48
        public static let maxWriteZeroesSegments = 52
        public static let writeZeroesMayUnmap = 56
        /// The struct ends at 96 with the zoned fields; newer front-ends may read further, and fields
        /// this device does not have read as zero.
        public static let end = 96
    }
}

/// The values that make up a virtio-blk config space.
struct BlockConfig: Equatable {
    var capacitySectors: UInt64
    var sizeMax: UInt32
    var segMax: UInt32
    var blockSize: UInt32
    var writeback: Bool
    var numQueues: UInt16
    var maxDiscardSectors: UInt32
    var maxRanges: UInt32

    /// The config space bytes, little endian, `VirtioBlock.ConfigOffset.end` long.
    func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VirtioBlock.ConfigOffset.end)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        typealias O = VirtioBlock.ConfigOffset
        put(capacitySectors, at: O.capacity)
        put(sizeMax, at: O.sizeMax)
        put(segMax, at: O.segMax)
        put(blockSize, at: O.blockSize)
        put(UInt8(0), at: O.physicalBlockExponent)
        put(UInt8(0), at: O.alignmentOffset)
        put(UInt16(1), at: O.minIOSize)
        put(UInt32(0), at: O.optIOSize)
        put(UInt8(writeback ? 1 : 0), at: O.writeback)
        put(numQueues, at: O.numQueues)
        put(maxDiscardSectors, at: O.maxDiscardSectors)
        put(maxRanges, at: O.maxDiscardSegments)
        put(blockSize / UInt32(VirtioBlock.sectorSize), at: O.discardSectorAlignment)
        put(maxDiscardSectors, at: O.maxWriteZeroesSectors)
        put(maxRanges, at: O.maxWriteZeroesSegments)
        put(UInt8(1), at: O.writeZeroesMayUnmap)
        return bytes
    }
}
