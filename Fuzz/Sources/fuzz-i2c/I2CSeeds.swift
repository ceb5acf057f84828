import FuzzSupport
import I2CDevice
import VhostUserKit

/// The seed corpus: requests as Linux's i2c-virtio lays them out (out_hdr, buffer, in_hdr, each in a
/// descriptor of its own), alone and chained with FAIL_NEXT, direct and indirect, plus malformed ones.
func i2cSeeds() -> [(String, [UInt8])] {
    let next = SplitRingLayout.flagNext, write = SplitRingLayout.flagWrite
    let failNext = VirtioI2C.Flag.failNext, read = VirtioI2C.Flag.read
    func header(_ address: I2CAddress, flags: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.u16(address.virtioField); w.u16(0); w.u32(flags)
        return w.bytes
    }
    /// Request `n`: header at 0x9000 + n × 0x100, data at 0x10000 + n × 0x2000, status at 0xb000 + n × 4.
    func request(_ seed: inout RingSeed, _ n: Int, _ address: I2CAddress, flags: UInt32, data: Int,
                 payload: [UInt8] = [], indirect: Bool = false) {
        let h = 0x9000 + n * 0x100, d = 0x10000 + n * 0x2000, s = 0xb000 + n * 4
        seed.patch(region: 0, offset: h, header(address, flags: flags))
        if !payload.isEmpty { seed.patch(region: 0, offset: d, payload) }
        var chain = [RingSeed.buffer(region: 0, offset: h, length: 8, flags: next, next: 1)]
        if data > 0 { chain.append(RingSeed.buffer(region: 0, offset: d, length: data, flags: next | (flags & read != 0 ? write : 0), next: 2)) }
        chain.append(RingSeed.buffer(region: 0, offset: s, length: 1, flags: write))
        seed.append(chain: chain, indirect: indirect)
    }
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, config: UInt8 = 1, _ body: (inout RingSeed) -> Void) {
        var seed = RingSeed()
        seed.sizeLog2 = 5
        body(&seed)
        seeds.append((name, [config, 0] + seed.encoded))
    }
    let eeprom = I2CAddress(sevenBit: 0x50)!, small = I2CAddress(sevenBit: 0x54)!, sensor = I2CAddress(sevenBit: 0x48)!
    let tenBit = I2CAddress(tenBit: 0x123)!, absent = I2CAddress(sevenBit: 0x20)!
    add("eeprom-page-write") { request(&$0, 0, eeprom, flags: 0, data: 8, payload: [0x01, 0x1e, 1, 2, 3, 4, 5, 6]) }
    add("eeprom-random-read") { s in
        request(&s, 0, eeprom, flags: failNext, data: 2, payload: [0x01, 0x1e])
        request(&s, 1, eeprom, flags: read, data: 64, indirect: true)
    }
    add("small-eeprom-read") { s in
        request(&s, 0, small, flags: failNext, data: 1, payload: [0x80])
        request(&s, 1, small, flags: read, data: 16)
    }
    add("sensor-registers") { s in
        request(&s, 0, sensor, flags: 0, data: 3, payload: [3, 0x50, 0x00])
        request(&s, 1, sensor, flags: failNext, data: 1, payload: [3])
        request(&s, 2, sensor, flags: read, data: 2)
    }
    add("ten-bit-read") { request(&$0, 0, tenBit, flags: read, data: 2) }
    add("quick-scan") { s in
        for (n, a) in [eeprom, sensor, absent, small].enumerated() { request(&s, n, a, flags: n == 1 ? read : 0, data: 0) }
    }
    add("quick-without-feature", config: 0) { request(&$0, 0, eeprom, flags: 0, data: 0) }
    add("fail-mid-transaction") { s in
        request(&s, 0, eeprom, flags: failNext, data: 3, payload: [0, 0x40, 0x99])
        request(&s, 1, sensor, flags: failNext, data: 1, payload: [7])
        request(&s, 2, eeprom, flags: read, data: 1)
    }
    add("unfinished-transaction") { request(&$0, 0, sensor, flags: failNext, data: 1, payload: [2]) }
    add("refused-address") { s in
        request(&s, 0, absent, flags: failNext, data: 1, payload: [0])
        request(&s, 1, absent, flags: read, data: 4)
    }
    add("reserved-flags") { request(&$0, 0, eeprom, flags: 1 << 7, data: 2, payload: [0, 0]) }
    add("oversized-read") { request(&$0, 0, eeprom, flags: read, data: 0x2000 + 1) }
    add("short-header") { s in
        s.patch(region: 0, offset: 0x9000, header(eeprom, flags: 0))
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x9000, length: 4, flags: next, next: 1),
                         RingSeed.buffer(region: 0, offset: 0xb000, length: 1, flags: write)]
        s.heads = [0]
    }
    add("no-status") { s in
        s.patch(region: 0, offset: 0x9000, header(eeprom, flags: 0))
        s.descriptors = [RingSeed.buffer(region: 0, offset: 0x9000, length: 8)]
        s.heads = [0]
    }
    return seeds
}
