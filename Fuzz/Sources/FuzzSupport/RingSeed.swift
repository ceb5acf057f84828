import VhostUserKit

/// Writes a `FuzzRing` input field by field, in the order `FuzzRing.init` reads it: how the ring
/// targets' seed corpora are made.
public struct RingSeed {
    public var sizeLog2: UInt8 = 4
    /// Bits 0-6: the region of the ring area; bit 7: flush against the region's end; else bits 1-6 pick a page.
    public var placement: UInt8 = 0
    /// Bit 0 INDIRECT_DESC, bit 1 EVENT_IDX; the rest belong to the target.
    public var featureBits: UInt8 = 3
    public var base: UInt16 = 0
    public var usedIndex: UInt16 = 0
    public var availFlags: UInt16 = 0
    public var usedEvent: UInt16 = 0
    public var descriptors: [[UInt8]] = []
    public var tables: [[[UInt8]]] = []
    public var heads: [UInt16] = []
    /// Extra available-index advance beyond `heads` (a jump past the ring size breaks it).
    public var extraAvail: UInt8 = 0
    public var patches: [(address: [UInt8], bytes: [UInt8])] = []

    public init() {}

    /// A buffer at `offset` (a multiple of 4) in region `region`; `flags` NEXT 1, WRITE 2.
    public static func buffer(region: Int, offset: Int, length: Int, flags: UInt16 = 0, next: Int = 0) -> [UInt8] {
        var w = ByteWriter()
        w.append([UInt8(flags & 3)] + address(region: region, offset: offset))
        w.u16(UInt16(length))
        w.append([UInt8(next)])
        return w.bytes
    }

    /// A descriptor pointing at indirect table `table` with `entries` descriptors.
    public static func indirect(table: Int, entries: Int) -> [UInt8] {
        [UInt8(SplitRingLayout.flagIndirect) | 0x10, UInt8(table), UInt8(entries), 0]
    }

    /// The address fields of a buffer or patch in region `region` at `offset` (a multiple of 4).
    public static func address(region: Int, offset: Int) -> [UInt8] {
        let words = offset / 4
        precondition(offset % 4 == 0 && words <= 0xffff)
        return [UInt8(region), UInt8(words & 0xff), UInt8(words >> 8)]
    }

    /// `bytes` written at `offset` of region `region` before the device runs (e.g. a request header).
    public mutating func patch(region: Int, offset: Int, _ bytes: [UInt8]) {
        patches.append(([0] + Self.address(region: region, offset: offset), bytes))
    }

    /// Appends `chain` (buffers whose NEXT indices count from 0) as one request: in an indirect table,
    /// or in consecutive descriptor slots (its NEXT indices moved to them); its head goes in the ring.
    public mutating func append(chain: [[UInt8]], indirect: Bool) {
        if indirect {
            descriptors.append(Self.indirect(table: tables.count, entries: chain.count))
            tables.append(chain)
            heads.append(UInt16(descriptors.count - 1))
        } else {
            let first = descriptors.count
            descriptors += chain.enumerated().map { i, d in var d = d; d[d.count - 1] = UInt8(first + i + 1); return d }
            heads.append(UInt16(first))
        }
    }

    public var encoded: [UInt8] {
        var w = ByteWriter()
        w.append([sizeLog2, placement, featureBits])
        w.u16(base); w.u16(usedIndex); w.u16(availFlags); w.u16(usedEvent)
        w.append([UInt8(descriptors.count)])
        descriptors.forEach { w.append($0) }
        w.append([UInt8(tables.count)])
        for t in tables {
            w.append([UInt8(t.count)])
            t.forEach { w.append($0) }
        }
        w.append([UInt8(heads.count) &+ extraAvail])
        heads.forEach { w.u16($0) }
        w.append([UInt8(patches.count)])
        for p in patches {
            w.append(p.address)
            w.append([UInt8(p.bytes.count)] + p.bytes)
        }
        return w.bytes
    }
}
