// Where a `run` request goes: random or sequential offsets, read or write.

enum Workload: String {
    case randread, randwrite, seqread, seqwrite

    var isRead: Bool { self == .randread || self == .seqread }
    var isRandom: Bool { self == .randread || self == .randwrite }
}

/// xorshift64*: a tiny, allocation-free generator, one per lane.
struct FastRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    @inline(__always)
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

/// Offsets for one lane: `blocks` request-sized blocks; sequential lanes start at their share of
/// the region so that lanes do not read the same blocks in lockstep.
struct OffsetStream {
    private let random: Bool
    private let blockSize: UInt64
    private let blocks: UInt64
    private var rng: FastRandom
    private var cursor: UInt64

    init(workload: Workload, blockSize: Int, regionSize: UInt64, lane: Int, lanes: Int) {
        random = workload.isRandom
        self.blockSize = UInt64(blockSize)
        blocks = max(1, regionSize / UInt64(blockSize))
        rng = FastRandom(seed: 0x5EED_0000 &+ UInt64(lane) &* 0x1_0000_0001 &+ monotonicNanoseconds())
        cursor = blocks * UInt64(lane) / UInt64(max(1, lanes))
    }

    @inline(__always)
    mutating func next() -> UInt64 {
        if random { return (rng.next() % blocks) &* blockSize }
        let offset = cursor &* blockSize
        cursor += 1
        if cursor == blocks { cursor = 0 }
        return offset
    }
}
