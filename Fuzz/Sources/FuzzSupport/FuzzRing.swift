import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A split ring built from fuzzer bytes in one `GuestLayout`: the queue size, where the rings lie, the
/// negotiated ring features, a descriptor table, indirect tables, the available ring and byte patches,
/// all decoded from the input. Device targets build one, make a `Virtqueue` over it, run their handler
/// and check the used ring with `RingOracle`.
///
/// Input order (what `RingSeed` writes): size, placement, features, base, used index, avail flags,
/// used_event, descriptor count and descriptors, table count and tables, available count and heads,
/// patch count and patches. A descriptor is a kind byte (bits 0-2: NEXT, WRITE, INDIRECT; bits 4-5: where
/// its buffer is) followed by its fields; see `decodeDescriptor`.
public struct FuzzRing {
    public static let maxTables = 4
    public static let maxTableEntries = 16
    static let tableStride = maxTableEntries * SplitRingLayout.descriptorSize

    public let layout: GuestLayout
    public let size: Int
    public let ring: SplitRingLayout
    public let features: UInt64
    /// The input's feature byte: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX; bits 2-7 are the target's.
    public let featureBits: UInt8
    public let base: UInt16
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64
    public let tables: UInt64
    /// Guest range of the ring area (rings and indirect tables).
    public let area: Range<UInt64>

    public var address: VringAddress {
        VringAddress(index: 0, descriptorTable: layout.userAddress(descriptorTable), usedRing: layout.userAddress(usedRing),
                     availableRing: layout.userAddress(availableRing))
    }

    /// Decodes a ring from `input` and writes it into guest memory (the ring area is zeroed first).
    public init(_ input: inout FuzzInput, layout: GuestLayout) {
        self.layout = layout
        size = 1 << input.below(9)
        ring = SplitRingLayout(size: size)
        let placement = input.u8()
        featureBits = input.u8()
        features = (featureBits & 1 != 0 ? VirtioFeature.ringIndirectDesc : 0) | (featureBits & 2 != 0 ? VirtioFeature.ringEventIdx : 0)
        base = input.u16()

        // Descriptor table, available ring, used ring, then the indirect tables, in one region: at a
        // page chosen by the input or flush against the region's end.
        let usedOffset = (ring.descriptorTableBytes + ring.availableRingBytes + 3) & ~3
        let tablesOffset = (usedOffset + ring.usedRingBytes + 15) & ~15
        let areaBytes = tablesOffset + Self.maxTables * Self.tableStride
        let region = layout.regions[Int(placement & 0x7f) % layout.regions.count]
        let room = Int(region.size) - areaBytes
        let start = placement & 0x80 != 0 ? room & ~15 : (Int(placement >> 1 & 0x3f) * 4096) % max(4096, room & ~4095)
        let first = region.guestPhysicalAddress + UInt64(start)
        descriptorTable = first
        availableRing = first + UInt64(ring.descriptorTableBytes)
        usedRing = first + UInt64(usedOffset)
        tables = first + UInt64(tablesOffset)
        area = first..<first + UInt64(areaBytes)
        layout.zero(first, areaBytes)

        let usedIndex = input.u16()
        let availFlags = input.u16()
        let usedEvent = input.u16()
        put(usedIndex, at: usedRing + UInt64(SplitRingLayout.usedIndexOffset))
        put(availFlags, at: availableRing)
        put(usedEvent, at: availableRing + UInt64(ring.usedEventOffset))

        for slot in 0..<min(Int(input.u8()), size) {
            writeDescriptor(decodeDescriptor(&input, tableSize: size), at: descriptorTable + UInt64(slot * 16))
        }
        for table in 0..<input.below(Self.maxTables + 1) {
            for slot in 0..<input.below(Self.maxTableEntries + 1) {
                writeDescriptor(decodeDescriptor(&input, tableSize: Self.maxTableEntries),
                                at: tables + UInt64(table * Self.tableStride + slot * 16))
            }
        }
        // More heads than the ring holds makes the index jump (a broken ring); heads with bit 15 set
        // are taken as they are, others modulo the size.
        let count = input.u8()
        for i in 0..<min(Int(count), size) {
            let value = input.u16()
            let head = value & 0x8000 != 0 ? value & 0x7fff : value % UInt16(size)
            put(head, at: availableRing + UInt64(ring.availEntryOffset(Int((base &+ UInt16(i)) & UInt16(size - 1)))))
        }
        put(base &+ UInt16(count), at: availableRing + UInt64(SplitRingLayout.availIndexOffset))

        for _ in 0..<input.below(8) {
            let gpa = decodeAddress(&input, kind: input.u8())
            let bytes = input.bytes(Int(input.u8()))
            if let p = layout.pointer(gpa, bytes.count) { p.copyMemory(from: bytes, byteCount: bytes.count) }
        }
    }

    /// Guest address of byte `offset` of indirect table `index`.
    public func table(_ index: Int) -> UInt64 { tables + UInt64(index * Self.tableStride) }

    private struct Descriptor { var address: UInt64; var length: UInt32; var flags: UInt16; var next: UInt16 }

    /// Kind bits 4-5 say where the buffer is: 0 in a region (region byte, offset u16 × 4), 1 an indirect
    /// table of this ring (table byte; length = entries × 16), 2 straddling a region's end (region
    /// byte, bytes before the end), 3 anywhere (u64). Then a length (u16, for kinds 0, 2 and 3) and the
    /// next index (byte, modulo the table size unless kind bit 3 is set).
    private func decodeDescriptor(_ input: inout FuzzInput, tableSize: Int) -> Descriptor {
        let kind = input.u8()
        let address = decodeAddress(&input, kind: kind)
        let length = kind >> 4 & 3 == 1 ? UInt32(input.below(Self.maxTableEntries + 1) * 16) : UInt32(input.u16())
        let next = kind & 8 != 0 ? UInt16(input.u8()) : UInt16(input.u8()) % UInt16(tableSize)
        return Descriptor(address: address, length: length, flags: UInt16(kind & 7), next: next)
    }

    private func decodeAddress(_ input: inout FuzzInput, kind: UInt8) -> UInt64 {
        switch kind >> 4 & 3 {
        case 0:
            let region = layout.regions[input.below(layout.regions.count)]
            return region.guestPhysicalAddress + UInt64(input.u16()) * 4
        case 1:
            return table(input.below(Self.maxTables))
        case 2:
            let region = layout.regions[input.below(layout.regions.count)]
            return region.guestPhysicalAddress + region.size - UInt64(input.u8())
        default:
            return input.u64()
        }
    }

    private func writeDescriptor(_ d: Descriptor, at gpa: UInt64) {
        guard let p = layout.pointer(gpa, 16) else { return }
        p.storeBytes(of: d.address.littleEndian, as: UInt64.self)
        p.storeBytes(of: d.length.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: d.flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: d.next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    func put(_ value: UInt16, at gpa: UInt64) { layout.pointer(gpa, 2)?.storeBytes(of: value.littleEndian, as: UInt16.self) }
    func get16(_ gpa: UInt64) -> UInt16 { UInt16(littleEndian: layout.pointer(gpa, 2)!.loadUnaligned(as: UInt16.self)) }
    func get32(_ gpa: UInt64) -> UInt32 { UInt32(littleEndian: layout.pointer(gpa, 4)!.loadUnaligned(as: UInt32.self)) }
}

extension FuzzRing {
    /// The call, error and wake eventfds every harness queue signals (drained after each input).
    private static let signals: (call: EventFD, err: EventFD, wake: EventFD) = {
        guard let call = try? EventFD(), let err = try? EventFD(), let wake = try? EventFD() else { fatalError("eventfd: errno \(errno)") }
        return (call, err, wake)
    }()

    /// A `Virtqueue` (device queue `index`) over this ring with the input's ring features plus
    /// `extraFeatures`, as a queue worker gets one. The ring lies inside guest memory by construction,
    /// so a refusal is a bug.
    public func makeQueue(index: Int = 0, extraFeatures: UInt64 = 0, policy: MalformedChainPolicy,
                          inflightRegion: UnsafeMutableRawPointer? = nil) -> Virtqueue {
        let s = Self.signals
        s.call.drain()
        s.err.drain()
        do {
            return try Virtqueue(index: index, size: size, address: address, base: base, memory: layout.memory,
                                 features: features | extraFeatures, call: s.call, err: s.err,
                                 completionPort: CompletionPort(wake: s.wake), inflightRegion: inflightRegion,
                                 malformedChainPolicy: policy, logger: quietLogger)
        } catch {
            fatalError("a ring laid out inside guest memory was refused: \(error)")
        }
    }
}

/// What a queue worker does with `handler` on `queue`: passes until the ring is empty (at most four),
/// then the stop that finishes or fails what the handler holds, and the last publish.
public func serveLikeAWorker(_ handler: any QueueHandler, _ queue: Virtqueue) {
    for _ in 0..<4 {
        queue.disableNotifications()
        _ = handler.process(queue)
        queue.publish()
        if queue.brokenReason != nil || !queue.enableNotifications() { break }
    }
    handler.stop(queue)
    queue.publish()
}
