// The data `verify` writes: every 4 KiB block holds its own byte offset, the pass's seed, and 510
// words derived from both, so a block that lands at the wrong offset, a stale block from an earlier
// pass and a torn or unwritten block are all told apart.

let patternBlock = 4096
private let wordsPerBlock = patternBlock / 8

@inline(__always)
private func mix(_ x: UInt64) -> UInt64 {  // splitmix64's finalizer
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

@inline(__always)
private func patternWord(offset: UInt64, seed: UInt64, index: Int) -> UInt64 {
    switch index {
    case 0: return offset
    case 1: return seed
    default: return mix(seed ^ (offset &* 0x0000_0100_0000_01B3) ^ UInt64(index))
    }
}

/// Fills the block that lives at byte `offset` of the device.
func stampBlock(_ block: UnsafeMutableRawPointer, offset: UInt64, seed: UInt64) {
    for i in 0..<wordsPerBlock {
        block.storeBytes(of: patternWord(offset: offset, seed: seed, index: i).littleEndian,
                         toByteOffset: i * 8, as: UInt64.self)
    }
}

/// Nil when the block read from `offset` holds what `stampBlock` wrote there, else a description of
/// the first difference.
func checkBlock(_ block: UnsafeRawPointer, offset: UInt64, seed: UInt64) -> String? {
    for i in 0..<wordsPerBlock {
        let expected = patternWord(offset: offset, seed: seed, index: i)
        let actual = UInt64(littleEndian: block.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        if actual == expected { continue }
        let storedOffset = UInt64(littleEndian: block.loadUnaligned(as: UInt64.self))
        let storedSeed = UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        var why = "word \(i) (byte \(i * 8)) is 0x\(hex(actual)), expected 0x\(hex(expected))"
        if storedSeed == seed && storedOffset != offset {
            why += "; the block holds the data written to offset \(storedOffset)"
        } else if storedSeed != seed && storedOffset == offset {
            why += "; the block holds data of another pass (seed 0x\(hex(storedSeed)))"
        } else if storedOffset == 0xA5A5_A5A5_A5A5_A5A5 {
            why += "; the read left the buffer's poison untouched"
        }
        return why
    }
    return nil
}

func hex(_ v: UInt64) -> String { String(v, radix: 16) }
