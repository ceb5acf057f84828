import ConsoleDevice
import FuzzSupport
import VhostUserKit

/// The seed corpus: the driver's control messages as Linux sends them (the handshake, opens and
/// closes, bad ones), control receive buffers, and data on each port's queues.
func consoleSeeds() -> [(String, [UInt8])] {
    let write = SplitRingLayout.flagWrite
    func message(_ id: UInt32, _ event: UInt16, _ value: UInt16) -> [UInt8] {
        var w = ByteWriter()
        w.u32(id); w.u16(event); w.u16(value)
        return w.bytes
    }
    var seeds: [(String, [UInt8])] = []
    /// A ring of one-buffer chains: `buffers` (contents, or nil for a writable buffer of `length`).
    func add(_ name: String, queue: UInt8, _ buffers: [([UInt8]?, Int)]) {
        var seed = RingSeed()
        seed.sizeLog2 = 4
        for (n, (bytes, length)) in buffers.enumerated() {
            let offset = 0x9000 + n * 0x100
            if let bytes { seed.patch(region: 0, offset: offset, bytes) }
            seed.descriptors.append(RingSeed.buffer(region: 0, offset: offset, length: length, flags: bytes == nil ? write : 0))
            seed.heads.append(UInt16(n))
        }
        seeds.append((name, [queue, 0, 12, 0] + seed.encoded))
    }
    add("handshake", queue: 0, [(message(0, 0, 1), 8), (message(0, 3, 1), 8), (message(1, 3, 1), 8), (message(1, 6, 1), 8),
                                (message(2, 3, 1), 8), (message(1, 6, 0), 8)])
    add("bad-messages", queue: 0, [(message(0, 3, 1), 8), ([1, 2, 3], 3), (message(0, 99, 1), 8), (message(0, 0, 0), 8),
                                   (message(0xffff_ffff, 6, 1), 8), (message(0, 0, 1), 8), (message(9, 3, 1), 8),
                                   (message(1, 5, 1), 8), (message(1, 6, 7), 8), (message(0, 0, 1) + [0, 0, 0, 0], 12)])
    add("control-buffers", queue: 1, [(nil, 64), (nil, 4), (nil, 4096), (nil, 0)])
    add("port1-output", queue: 2, [(Array("hello port".utf8), 10), (Array(repeating: 0x41, count: 200), 200)])
    add("port1-input-buffers", queue: 3, [(nil, 4096), (nil, 1)])
    add("console-output", queue: 4, [(Array("console line\n".utf8), 13)])
    add("console-input-buffers-single-port", queue: 5 | 8, [(nil, 4096)])
    add("console-output-single-port", queue: 4 | 8, [(Array("single\n".utf8), 7)])
    return seeds
}
