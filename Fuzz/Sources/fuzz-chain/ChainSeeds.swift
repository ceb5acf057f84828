import FuzzSupport
import VhostUserKit

/// The seed corpus: well-formed rings as drivers build them (direct and indirect chains, buffers
/// across regions, event-idx, a resumed inflight queue) and the classic malformed ones.
func chainSeeds() -> [(String, [UInt8])] {
    let next = SplitRingLayout.flagNext, write = SplitRingLayout.flagWrite
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, layout: UInt8 = 0, _ body: (inout RingSeed) -> Void, tail: [UInt8] = []) {
        var seed = RingSeed()
        body(&seed)
        seeds.append((name, [layout] + seed.encoded + tail))
    }
    // An rng-style ring: single writable buffers.
    for (layout, sizeLog2) in [(0, 0), (0, 4), (1, 8), (2, 6)] as [(UInt8, UInt8)] {
        add("writable-\(layout)-\(sizeLog2)", layout: layout) { s in
            s.sizeLog2 = sizeLog2
            let n = min(1 << sizeLog2, 8)
            s.descriptors = (0..<n).map { RingSeed.buffer(region: 0, offset: 0x8000 + $0 * 0x100, length: 64, flags: write) }
            s.heads = (0..<n).map(UInt16.init)
        }
    }
    // A blk-style request: header, data, status; direct and indirect.
    add("request-direct") { s in
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x9000, length: 16, flags: next, next: 1),
                         RingSeed.buffer(region: 0, offset: 0xa000, length: 4096, flags: next | write, next: 2),
                         RingSeed.buffer(region: 0, offset: 0xb000, length: 1, flags: write)]
        s.heads = [0]
    }
    for layout in [0, 1, 2] as [UInt8] {
        add("request-indirect-\(layout)", layout: layout) { s in
            s.descriptors = [RingSeed.indirect(table: 0, entries: 3)]
            s.tables = [[RingSeed.buffer(region: 0, offset: 0x9000, length: 16, flags: next, next: 1),
                         RingSeed.buffer(region: 1 % (layout == 0 ? 1 : 2), offset: 0x4000, length: 8192, flags: next, next: 2),
                         RingSeed.buffer(region: 0, offset: 0xb000, length: 1, flags: write)]]
            s.heads = [0]
        }
    }
    // Buffers that cross from one region into the next (layout 2: adjacent regions) or into the hole
    // after a region (layout 1).
    for layout in [1, 2] as [UInt8] {
        add("across-regions-\(layout)", layout: layout) { s in
            s.descriptors = [RingSeed.buffer(region: 0, offset: 0x3_f000, length: 0x2000, flags: write)]
            s.heads = [0]
        }
    }
    // Event-idx with used_event, a ring flush against its region's end, a non-zero base and used index.
    add("event-idx-end") { s in
        s.placement = 0x80
        s.featureBits = 2
        s.base = 0xfffe
        s.usedIndex = 0xfffe
        s.usedEvent = 0xffff
        s.descriptors = (0..<4).map { RingSeed.buffer(region: 0, offset: 0x8000 + $0 * 0x40, length: 64, flags: write) }
        s.heads = [3, 2, 1, 0]
    }
    // Many chains sharing a long NEXT list, published one by one.
    add("long-chain", { s in
        s.sizeLog2 = 5
        s.descriptors = (0..<32).map { RingSeed.buffer(region: 0, offset: 0x8000 + $0 * 0x10, length: 16, flags: $0 == 31 ? write : next | ($0 >= 16 ? write : 0), next: $0 + 1) }
        s.heads = [0, 16, 31]
    }, tail: [0, 1, 5, 1, 0, 1])
    // Malformed: a loop, an index outside the table, readable after writable, nested indirect,
    // INDIRECT with NEXT, indirect without the feature, a buffer outside memory, a head out of range,
    // an index jump.
    add("loop") { s in
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: next, next: 1),
                         RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: next, next: 0)]
        s.heads = [0, 1]
    }
    add("readable-after-writable") { s in
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: next | write, next: 1),
                         RingSeed.buffer(region: 0, offset: 0x8100, length: 8)]
        s.heads = [0, 1]
    }
    add("nested-indirect") { s in
        s.descriptors = [RingSeed.indirect(table: 0, entries: 1)]
        s.tables = [[RingSeed.indirect(table: 1, entries: 1)], [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]]
        s.heads = [0]
    }
    add("indirect-with-next") { s in
        var d = RingSeed.indirect(table: 0, entries: 1)
        d[0] |= UInt8(next)
        s.descriptors = [d, RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]
        s.tables = [[RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]]
        s.heads = [0]
    }
    add("indirect-not-negotiated") { s in
        s.featureBits = 0
        s.descriptors = [RingSeed.indirect(table: 0, entries: 1)]
        s.tables = [[RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]]
        s.heads = [0]
    }
    add("outside-memory", layout: 1) { s in
        s.descriptors = [[UInt8(write) | 0x20, 0, 0x10, 0x00, 0x01, 0]]  // 16 bytes before region 0's end, 256 long
        s.heads = [0]
    }
    add("head-out-of-range") { s in
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]
        s.heads = [0x8000 | 200]
    }
    add("index-jump") { s in
        s.sizeLog2 = 1
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write)]
        s.heads = [0, 0]
        s.extraAvail = 5
    }
    add("stop-policy") { s in
        s.featureBits = 4 | 3
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: write),
                         RingSeed.buffer(region: 0, offset: 0x8000, length: 8, flags: next, next: 1)]
        s.heads = [0, 1, 0]
    }
    // A queue resumed from an inflight region: valid header (version 1, desc_num 16), two heads in flight.
    add("inflight-resume", { s in
        s.featureBits = 8 | 3
        s.usedIndex = 7
        s.descriptors = (0..<4).map { RingSeed.buffer(region: 0, offset: 0x8000 + $0 * 0x40, length: 64, flags: write) }
        s.base = 7
        s.heads = [2]
    }, tail: [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 16, 0, 0, 0, 5, 0,
              2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
              3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    return seeds
}
