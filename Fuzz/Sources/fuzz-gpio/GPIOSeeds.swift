import FuzzSupport
import VhostUserKit

/// The seed corpus: requests as Linux's gpio-virtio driver sends them (an 8-byte header, a 2-byte
/// response or 1 + names for GET_NAMES) followed by eventq buffers (2-byte line, 1-byte status), in
/// sequences that enable a trigger and fire it: an edge latched by the requests, a level held.
func gpioSeeds() -> [(String, [UInt8])] {
    let next = SplitRingLayout.flagNext, write = SplitRingLayout.flagWrite
    func header(_ type: UInt16, _ line: UInt16, _ value: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.u16(type); w.u16(line); w.u32(value)
        return w.bytes
    }
    /// A ring of requests (type, line, value, response size), header n at 0x9000 + n × 0x40.
    func requests(_ list: [(UInt16, UInt16, UInt32, Int)], indirect: Bool = false) -> [UInt8] {
        var seed = RingSeed()
        for (n, (type, line, value, response)) in list.enumerated() {
            let h = 0x9000 + n * 0x40, r = 0xa000 + n * 0x40
            seed.patch(region: 0, offset: h, header(type, line, value))
            let chain = [RingSeed.buffer(region: 0, offset: h, length: 8, flags: next, next: 1),
                         RingSeed.buffer(region: 0, offset: r, length: response, flags: write)]
            if indirect {
                seed.descriptors.append(RingSeed.indirect(table: seed.tables.count, entries: chain.count))
                seed.tables.append(chain)
                seed.heads.append(UInt16(seed.descriptors.count - 1))
            } else {
                let first = seed.descriptors.count
                seed.descriptors += chain.enumerated().map { i, d in var d = d; d[d.count - 1] = UInt8(first + i + 1); return d }
                seed.heads.append(UInt16(first))
            }
        }
        return seed.encoded
    }
    /// A ring of eventq buffers for `lines`.
    func events(_ lines: [UInt16]) -> [UInt8] {
        var seed = RingSeed()
        for (n, line) in lines.enumerated() {
            let q = 0xc000 + n * 0x10, s = 0xd000 + n * 4
            var w = ByteWriter()
            w.u16(line)
            seed.patch(region: 0, offset: q, w.bytes)
            let first = seed.descriptors.count
            seed.descriptors += [RingSeed.buffer(region: 0, offset: q, length: 2, flags: next, next: first + 1),
                                 RingSeed.buffer(region: 0, offset: s, length: 1, flags: write)]
            seed.heads.append(UInt16(first))
        }
        return seed.encoded
    }
    let (names, getDirection, setDirection, getValue, setValue, setIRQ): (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (1, 2, 3, 4, 5, 6)
    // Config byte, layout choice (0) before each ring.
    func seed(_ irq: Bool, _ requestRing: [UInt8], _ eventRing: [UInt8]) -> [UInt8] { [irq ? 1 : 0, 0] + requestRing + [0] + eventRing }
    return [
        ("names", seed(true, requests([(names, 0, 0, 25)]), events([]))),
        ("directions-values", seed(true, requests([(getDirection, 4, 0, 2), (setDirection, 4, 1, 2), (setValue, 4, 1, 2),
                                                   (getValue, 4, 0, 2), (setDirection, 4, 0, 2)], indirect: true), events([]))),
        ("loopback", seed(true, requests([(setValue, 0, 1, 2), (setDirection, 0, 1, 2), (getValue, 1, 0, 2)]), events([]))),
        ("edge-latched", seed(true, requests([(setDirection, 1, 2, 2), (setIRQ, 1, 1, 2), (setDirection, 0, 1, 2), (setValue, 0, 1, 2)]),
                              events([1, 3]))),
        ("level-high", seed(true, requests([(setDirection, 0, 1, 2), (setValue, 0, 1, 2), (setIRQ, 1, 4, 2)]), events([1, 1]))),
        ("refusals", seed(true, requests([(7, 0, 0, 2), (getValue, 9, 0, 2), (getValue, 7, 0, 2), (setIRQ, 1, 5, 2),
                                          (setValue, 0, 2, 1), (names, 0, 0, 3)]), events([9, 0xffff]))),
        ("without-irq", seed(false, requests([(setIRQ, 1, 1, 2)]), events([1]))),
    ]
}
