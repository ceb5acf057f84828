import BlockDevice
import FuzzSupport
import VhostUserKit

/// The seed corpus: each request type as Linux sends it (header, data, status byte), direct and
/// indirect, on each configuration, plus a few rings of several requests.
func blockSeeds() -> [(String, [UInt8])] {
    let next = SplitRingLayout.flagNext, write = SplitRingLayout.flagWrite
    typealias T = VirtioBlock.RequestType
    func header(_ type: UInt32, sector: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.u32(type); w.u32(0); w.u64(sector)
        return w.bytes
    }
    func ranges(_ list: [(UInt64, UInt32, UInt32)]) -> [UInt8] {
        var w = ByteWriter()
        for (sector, count, flags) in list { w.u64(sector); w.u32(count); w.u32(flags) }
        return w.bytes
    }
    /// Request `n` of a ring: header at 0x9000 + n × 0x100, data at 0x10000 + n × 0x2000, status at 0xb000 + n.
    func request(_ seed: inout RingSeed, _ n: Int, type: UInt32, sector: UInt64, data: Int, dataWritable: Bool,
                 payload: [UInt8] = [], indirect: Bool = false) {
        let h = 0x9000 + n * 0x100, d = 0x10000 + n * 0x2000, s = 0xb000 + n * 4
        seed.patch(region: 0, offset: h, header(type, sector: sector))
        if !payload.isEmpty { seed.patch(region: 0, offset: d, payload) }
        var chain = [RingSeed.buffer(region: 0, offset: h, length: 16, flags: next, next: 1)]
        if data > 0 { chain.append(RingSeed.buffer(region: 0, offset: d, length: data, flags: next | (dataWritable ? write : 0), next: 2)) }
        chain.append(RingSeed.buffer(region: 0, offset: s, length: 1, flags: write))
        seed.append(chain: chain, indirect: indirect)
    }
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, config: UInt8, layout: UInt8 = 0, _ body: (inout RingSeed) -> Void) {
        var seed = RingSeed()
        seed.sizeLog2 = 4
        body(&seed)
        seeds.append((name, [config, layout] + seed.encoded))
    }
    let configs: [(String, UInt8)] = [("null", 0), ("file", 1 | 16), ("file-4k", 1 | 4 | 16), ("file-threads", 1 | 8 | 16),
                                      ("file-ro", 1 | 2), ("file-writethrough", 1 | 16 | 32)]
    for (name, config) in configs {
        let block = config & 4 != 0 ? 4096 : 512
        let sector = UInt64(config & 4 != 0 ? 8 : 1)
        add("read-\(name)", config: config) { request(&$0, 0, type: T.read.rawValue, sector: sector, data: block, dataWritable: true) }
        add("write-\(name)", config: config) { request(&$0, 0, type: T.write.rawValue, sector: sector, data: block, dataWritable: false, payload: [1, 2, 3, 4]) }
        add("mixed-\(name)", config: config) { s in
            request(&s, 0, type: T.write.rawValue, sector: 0, data: 2 * block, dataWritable: false, payload: [9, 9])
            request(&s, 1, type: T.read.rawValue, sector: 0, data: 2 * block, dataWritable: true, indirect: true)
            request(&s, 2, type: T.flush.rawValue, sector: 0, data: 0, dataWritable: false)
            request(&s, 3, type: T.getID.rawValue, sector: 0, data: 20, dataWritable: true)
        }
    }
    for (name, type) in [("discard", T.discard), ("write-zeroes", T.writeZeroes)] {
        add("\(name)-file", config: 1 | 16) { request(&$0, 0, type: type.rawValue, sector: 0, data: 32, dataWritable: false,
                                                      payload: ranges([(0, 8, 0), (64, 16, type == .writeZeroes ? 1 : 0)])) }
        add("\(name)-null", config: 0) { request(&$0, 0, type: type.rawValue, sector: 0, data: 16, dataWritable: false, payload: ranges([(8, 8, 0)])) }
    }
    add("read-across-regions", config: 1, layout: 2) { s in
        s.patch(region: 0, offset: 0x9000, header(T.read.rawValue, sector: 0))
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x9000, length: 16, flags: next, next: 1),
                         RingSeed.buffer(region: 0, offset: 0x3_f000, length: 0x2000, flags: next | write, next: 2),
                         RingSeed.buffer(region: 0, offset: 0xb000, length: 1, flags: write)]
        s.heads = [0]
    }
    add("unsupported-type", config: 1) { request(&$0, 0, type: 99, sector: 0, data: 0, dataWritable: false) }
    add("beyond-the-end", config: 1) { request(&$0, 0, type: T.read.rawValue, sector: 2047, data: 1024, dataWritable: true) }
    add("no-status", config: 0) { s in
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x9000, length: 16)]
        s.heads = [0]
    }
    return seeds
}
