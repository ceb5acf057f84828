import VhostUserKit

/// What the harness expects of a ring after the device ran, worked out on its own from the bytes the
/// input wrote (before the device touched them): which heads were made available, and each head's
/// buffers by following its links the simple way.
///
/// The checks hold only while the device's writes cannot change what it reads as rings: when a
/// writable buffer of an available chain overlaps the ring area or an indirect table, the guest is
/// rewriting its rings under the device (allowed, but then the snapshot proves nothing) and the used
/// ring checks are skipped.
public struct RingOracle {
    /// One buffer of a chain, in guest addresses.
    public struct Buffer: Equatable { public var gpa: UInt64; public var length: UInt64; public var writable: Bool }

    public let ring: FuzzRing
    /// The heads in the available window, in ring order.
    public let heads: [UInt16]
    /// Whether the device's writes may change the rings (the checks are then skipped).
    public let rewritesRings: Bool
    private let usedStart: UInt16
    private var writableBytes: [UInt16: UInt64] = [:]

    public init(_ ring: FuzzRing) {
        self.ring = ring
        usedStart = ring.get16(ring.usedRing + UInt64(SplitRingLayout.usedIndexOffset))
        let availIndex = ring.get16(ring.availableRing + UInt64(SplitRingLayout.availIndexOffset))
        let window = Int(availIndex &- ring.base)
        var heads: [UInt16] = []
        if window <= ring.size {
            for i in 0..<window {
                let slot = Int((ring.base &+ UInt16(i)) & UInt16(ring.size - 1))
                heads.append(ring.get16(ring.availableRing + UInt64(ring.ring.availEntryOffset(slot))))
            }
        }
        self.heads = heads
        var metadata: [Range<UInt64>] = [ring.area]
        var rewrites = false
        var sums: [UInt16: UInt64] = [:]
        for head in heads where Int(head) < ring.size {
            guard let buffers = Self.buffers(ring, head: head, tables: &metadata) else { continue }
            sums[head] = buffers.filter(\.writable).reduce(0) { $0 + $1.length }
            for b in buffers where b.writable && b.length > 0 {
                let end = b.gpa.addingReportingOverflow(b.length)
                let range = b.gpa..<(end.overflow ? UInt64.max : end.partialValue)
                if metadata.contains(where: { $0.overlaps(range) }) { rewrites = true }
            }
        }
        // The device writes the used ring: an indirect table there changes under it too.
        let used = ring.usedRing..<ring.usedRing + UInt64(ring.ring.usedRingBytes)
        if metadata.dropFirst().contains(where: { $0.overlaps(used) }) { rewrites = true }
        rewritesRings = rewrites
        writableBytes = sums
    }

    /// Follows `head`'s links: NEXT within a table, INDIRECT into a table (recorded in `tables`).
    /// Nil when a link or a table is outside guest memory or the chain does not end within the size.
    public static func buffers(_ ring: FuzzRing, head: UInt16, tables: inout [Range<UInt64>]) -> [Buffer]? {
        var table = ring.descriptorTable
        var tableSize = ring.size
        var index = head
        var result: [Buffer] = []
        for _ in 0...(ring.size + 1) {
            guard Int(index) < tableSize, let d = ring.layout.pointer(table + UInt64(index) * 16, 16) else { return nil }
            let address = UInt64(littleEndian: d.loadUnaligned(as: UInt64.self))
            let length = UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
            if flags & SplitRingLayout.flagIndirect != 0 {
                guard length >= 16, ring.layout.pointer(address, Int(length)) != nil else { return nil }
                tables.append(address..<address + UInt64(length))
                table = address
                tableSize = Int(length) / 16
                index = 0
                continue
            }
            result.append(Buffer(gpa: address, length: UInt64(length), writable: flags & SplitRingLayout.flagWrite != 0))
            guard flags & SplitRingLayout.flagNext != 0 else { return result }
            index = next
        }
        return nil
    }

    /// The chain the kit handed out must be exactly `head`'s buffers: the same guest bytes, in order,
    /// readable then writable, every segment inside one region.
    public func expectMatches(_ chain: DescriptorChain) {
        var tables: [Range<UInt64>] = []
        guard let buffers = Self.buffers(ring, head: chain.head, tables: &tables) else {
            fatalError("the kit accepted chain \(chain.head), whose links leave guest memory or do not end")
        }
        let readable = buffers.filter { !$0.writable }, writable = buffers.filter(\.writable)
        expectSame(chain.readable, readable, "readable", chain.head)
        expectSame(chain.writable, writable, "writable", chain.head)
        guard chain.readableLength == readable.reduce(0, { $0 + Int($1.length) }),
              chain.writableLength == writable.reduce(0, { $0 + Int($1.length) }) else {
            fatalError("chain \(chain.head): lengths \(chain.readableLength)/\(chain.writableLength) do not match its descriptors")
        }
    }

    private func expectSame(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, _ buffers: [Buffer], _ what: String, _ head: UInt16) {
        var actual: [Range<UInt64>] = []
        for s in segments {
            guard s.count > 0, let (gpa, left) = ring.layout.guestAddress(ofKitPointer: s.baseAddress!), s.count <= left else {
                fatalError("chain \(head): a \(what) segment of \(s.count) bytes is not inside one guest memory region")
            }
            Self.append(gpa..<gpa + UInt64(s.count), to: &actual)
        }
        var expected: [Range<UInt64>] = []
        for b in buffers where b.length > 0 {
            let end = b.gpa.addingReportingOverflow(b.length)
            if end.overflow { fatalError("chain \(head): the kit accepted a buffer that wraps around the address space") }
            Self.append(b.gpa..<end.partialValue, to: &expected)
        }
        if actual != expected { fatalError("chain \(head): \(what) segments \(actual) but descriptors say \(expected)") }
    }

    private static func append(_ range: Range<UInt64>, to list: inout [Range<UInt64>]) {
        if let last = list.last, last.upperBound == range.lowerBound {
            list[list.count - 1] = last.lowerBound..<range.upperBound
        } else {
            list.append(range)
        }
    }

    /// Every used element the device published since the ring was built names a head that was made
    /// available (each at most as often as it was) and reports no more bytes than that chain can hold.
    /// `resubmitted` lists heads handed out again from an inflight region.
    public func expectValidUsedRing(resubmitted: [UInt16] = []) {
        guard !rewritesRings else { return }
        let usedIndex = ring.get16(ring.usedRing + UInt64(SplitRingLayout.usedIndexOffset))
        var available: [UInt16: Int] = [:]
        for head in heads + resubmitted { available[head, default: 0] += 1 }
        let count = Int(usedIndex &- usedStart)
        guard count <= heads.count + resubmitted.count else {
            fatalError("\(count) used elements for \(heads.count) available chains")
        }
        for i in 0..<count {
            let e = ring.usedRing + UInt64(ring.ring.usedElementOffset(Int((usedStart &+ UInt16(i)) & UInt16(ring.size - 1))))
            let id = ring.get32(e), length = ring.get32(e + 4)
            guard id < UInt32(ring.size), let left = available[UInt16(id)], left > 0 else {
                fatalError("used element \(i) names head \(id), which was not made available (heads \(heads))")
            }
            available[UInt16(id)] = left - 1
            if let limit = writableBytes[UInt16(id)], UInt64(length) > limit {
                fatalError("used element \(i): head \(id) reports \(length) bytes written but has \(limit) writable")
            }
        }
    }
}
