import FuzzSupport
import VhostUserKit

/// The seed corpus: control requests as Linux's virtio_snd driver sends them (queries at probe,
/// SET_PARAMS / PREPARE / START for both streams, a control write), then transfers for them.
func soundSeeds() -> [(String, [UInt8])] {
    let next = SplitRingLayout.flagNext, write = SplitRingLayout.flagWrite
    func le(_ values: [UInt32]) -> [UInt8] { var w = ByteWriter(); values.forEach { w.u32($0) }; return w.bytes }
    /// A ring of (request bytes, response size) chains, request n at 0x9000 + n × 0x400.
    func ring(_ list: [(request: [UInt8], response: Int)]) -> [UInt8] {
        var seed = RingSeed()
        seed.sizeLog2 = 5  // 32 descriptors: up to 16 two-buffer requests
        for (n, (request, response)) in list.enumerated() {
            let r = 0x9000 + n * 0x400, s = 0x20000 + n * 0x400
            let first = seed.descriptors.count
            if request.isEmpty {
                seed.descriptors.append(RingSeed.buffer(region: 0, offset: s, length: response, flags: write))
            } else {
                // A patch holds at most 255 bytes: CTL_WRITE's 520 go in pieces.
                for start in stride(from: 0, to: request.count, by: 252) {
                    seed.patch(region: 0, offset: r + start, Array(request[start..<min(start + 252, request.count)]))
                }
                seed.descriptors += [RingSeed.buffer(region: 0, offset: r, length: request.count, flags: next, next: first + 1),
                                     RingSeed.buffer(region: 0, offset: s, length: response, flags: write)]
            }
            seed.heads.append(UInt16(first))
        }
        return seed.encoded
    }
    let setParams0 = le([0x101, 0, 256, 64, 0]) + [2, 5, 7, 0]
    let setParams1 = le([0x101, 1, 64, 16, 0]) + [1, 4, 1, 0]
    let control = ring([(le([0x100, 0, 2, 32]), 68), (le([1, 0, 2, 24]), 52), (le([0x200, 0, 2, 24]), 52),
                        (le([0x300, 0, 4, 96]), 388), (setParams0, 4), (le([0x102, 0]), 4), (le([0x104, 0]), 4),
                        (setParams1, 4), (le([0x102, 1]), 4), (le([0x104, 1]), 4),
                        (le([0x303, 0, 50]) + [UInt8](repeating: 0, count: 508), 4), (le([0x302, 1]), 516)])
    let events = ring([([], 8), ([], 8)])
    let tx = ring([(le([0]) + [UInt8](repeating: 0x11, count: 64), 8), (le([0]) + [1, 2, 3], 8), (le([7]), 8)])
    let rx = ring([(le([1]), 24), (le([0]), 24), (le([1]), 4)])
    let refusals = ring([(le([0x999]), 4), (le([0x104, 0]), 4), (le([0x100, 1, 5, 32]), 68), ([1], 4), (le([0x303, 9, 1]), 4)])
    // Layout choice (0) before each ring.
    return [
        ("driver-probe-and-stream", [0] + control + [0] + events + [0] + tx + [0] + rx),
        ("refusals", [0] + refusals + [0] + events + [0] + tx + [0] + rx),
    ]
}
