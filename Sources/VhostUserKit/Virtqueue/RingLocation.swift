/// Where a split ring's three parts are in the back-end's address space.
struct RingLocation {
    let descriptors: UnsafeMutableRawPointer
    let available: UnsafeMutableRawPointer
    let used: UnsafeMutableRawPointer

    /// Resolves the ring at `address` (front-end virtual addresses) in `memory`, checking that each
    /// part lies inside it and is aligned as virtio 1.2, 2.7 requires (descriptor table 16 bytes,
    /// available ring 2, used ring 4) in the front-end's addresses and in ours: a region's file offset
    /// can shift the latter, and the ring indices are accessed atomically.
    init(_ address: VringAddress, size: Int, in memory: GuestMemory) throws(VirtqueueError) {
        let layout = SplitRingLayout(size: size)
        func part(_ name: String, _ start: UInt64, _ length: Int, alignment: Int) throws(VirtqueueError) -> UnsafeMutableRawPointer {
            guard let host = memory.contiguous(user: start, length: length) else {
                throw .ringOutsideMemory(part: name, address: start)
            }
            guard start % UInt64(alignment) == 0, Int(bitPattern: host) % alignment == 0 else {
                throw .ringMisaligned(part: name, address: start, alignment: alignment)
            }
            return host
        }
        descriptors = try part("descriptor table", address.descriptorTable, layout.descriptorTableBytes, alignment: 16)
        available = try part("available ring", address.availableRing, layout.availableRingBytes, alignment: 2)
        used = try part("used ring", address.usedRing, layout.usedRingBytes, alignment: 4)
    }
}
