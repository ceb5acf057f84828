import FuzzSupport
import InputDevice
import VhostUserKit

/// The seed corpus: eventq rings of 8-byte buffers (direct, split in two, indirect, too small) with
/// control text for each kind; statusq rings with LED events, short and long buffers; config writes.
func inputSeeds() -> [(String, [UInt8])] {
    let write = SplitRingLayout.flagWrite, next = SplitRingLayout.flagNext
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, config: UInt8, text: String, configOps: [(UInt8, [UInt8])] = [], _ body: (inout RingSeed) -> Void) {
        var seed = RingSeed()
        seed.sizeLog2 = 4
        body(&seed)
        let bytes = Array(text.utf8)
        var encoded = [config, UInt8(bytes.count & 0xff), UInt8(bytes.count >> 8)] + bytes + [UInt8(configOps.count)]
        for (offset, data) in configOps { encoded += [offset, UInt8(data.count)] + data }
        seeds.append((name, encoded + [0] + seed.encoded))
    }
    func eventBuffers(_ seed: inout RingSeed, count: Int, length: Int = 8) {
        for i in 0..<count {
            seed.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9000 + 16 * i, length: length, flags: write))
            seed.heads.append(UInt16(seed.descriptors.count - 1))
        }
    }
    let texts: [(String, UInt8, String)] = [
        ("keyboard", 0 << 1, "key KEY_A 1\nsync\nkey KEY_A 0\nsync\ntype \"Hi!\"\nevent EV_LED LED_CAPSL 1\nsync\nstatus"),
        ("mouse", 1 << 1, "rel 10 -5\nbtn BTN_LEFT 1\nsync\nwheel 1\nsync\nbtn BTN_LEFT 0\nsync"),
        ("tablet", 2 << 1, "abs 1000 2000\nsync\nabs 32767 0\nsync\nabs 40000 1\nsync"),
        ("touch", 3 << 1, "touch 100 200\ntouch 110 210\nuntouch\nuntouch\nevent 99 0 0"),
    ]
    for (kind, config, text) in texts {
        add("eventq-\(kind)", config: config, text: text) { eventBuffers(&$0, count: 12) }
        add("eventq-\(kind)-few-buffers", config: config, text: text) { eventBuffers(&$0, count: 3) }
    }
    add("eventq-split-and-small", config: 0, text: "key KEY_B 1\nsync") { s in
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9000, length: 3, flags: write | next, next: 1))
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9100, length: 5, flags: write))
        s.heads.append(0)
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9200, length: 4, flags: write))
        s.heads.append(2)
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9300, length: 8, flags: write))
        s.heads.append(3)
    }
    add("eventq-indirect", config: 1 << 1, text: "rel 1 1\nsync") { s in
        s.tables.append([RingSeed.buffer(region: 0, offset: 0x9000, length: 8, flags: write)])
        s.descriptors.append(RingSeed.indirect(table: 0, entries: 1))
        s.heads.append(0)
        eventBuffers(&s, count: 2)
    }
    add("statusq-leds", config: 1, text: "", configOps: [(0, [0x11, 0x11]), (1, [0x12]), (2, [9]), (0, [UInt8](repeating: 0xee, count: 16))]) { s in
        let events: [[UInt8]] = [[0x11, 0, 1, 0, 1, 0, 0, 0], [0x11, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
                                 [1, 0, 30, 0, 1, 0, 0, 0], [0x11, 0, 0x7f, 0, 1, 0, 0, 0]]
        for (i, event) in events.enumerated() {
            s.patch(region: 0, offset: 0x9000 + 16 * i, event)
            s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9000 + 16 * i, length: 8))
            s.heads.append(UInt16(i))
        }
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9800, length: 3))
        s.heads.append(UInt16(events.count))
        s.descriptors.append(RingSeed.buffer(region: 0, offset: 0x9900, length: 8, flags: write))
        s.heads.append(UInt16(events.count + 1))
    }
    return seeds
}
