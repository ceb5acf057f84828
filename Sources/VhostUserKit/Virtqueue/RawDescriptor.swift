/// One split-ring descriptor as the driver wrote it (virtio 1.2, 2.7.5), read from guest memory
/// (little-endian, unaligned: an indirect table may sit anywhere).
struct RawDescriptor {
    let address: UInt64
    let length: UInt32
    let flags: UInt16
    let next: UInt16

    /// Descriptor `index` of the table at `table` (the caller checked the index).
    @inline(__always)
    init(_ table: UnsafeRawPointer, index: UInt16) {
        let d = table + Int(index) * SplitRingLayout.descriptorSize
        address = UInt64(littleEndian: d.loadUnaligned(as: UInt64.self))
        length = UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        next = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
    }

    var isIndirect: Bool { flags & SplitRingLayout.flagIndirect != 0 }
    var isWritable: Bool { flags & SplitRingLayout.flagWrite != 0 }
    var hasNext: Bool { flags & SplitRingLayout.flagNext != 0 }
}
