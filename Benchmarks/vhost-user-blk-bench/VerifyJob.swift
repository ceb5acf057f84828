// `verify`'s job for one lane and one phase: write (or read back and check) the request-sized units
// u = first, first + stride, … of the region. Even units go as one buffer (blkioq_write/read), odd
// units as vectors (writev in two parts, readv in 4 KiB segments) so both descriptor shapes are
// checked.
import CBlkio
#if canImport(Glibc)
import Glibc
#endif

final class VerifyJob: QueueJob {
    enum Phase { case write, read }

    private let phase: Phase
    private let seed: UInt64
    private let unitSize: Int
    private let regionSize: UInt64
    private let unitCount: Int
    private let stride: Int
    private var nextUnit: Int
    private let buffers: UnsafeMutableRawPointer
    private let vectors: UnsafeMutablePointer<iovec>
    private let vectorsPerSlot: Int
    private let slotUnits: UnsafeMutablePointer<Int>
    private(set) var blocksDone = 0
    /// The first mismatch this lane saw; the lane stops submitting after it.
    private(set) var mismatch: String?

    init(phase: Phase, seed: UInt64, unitSize: Int, regionSize: UInt64, firstUnit: Int, stride: Int,
         depth: Int, buffers: UnsafeMutableRawPointer) {
        self.phase = phase
        self.seed = seed
        self.unitSize = unitSize
        self.regionSize = regionSize
        unitCount = Int((regionSize + UInt64(unitSize) - 1) / UInt64(unitSize))
        self.stride = stride
        nextUnit = firstUnit
        self.buffers = buffers
        vectorsPerSlot = unitSize / patternBlock
        vectors = .allocate(capacity: depth * vectorsPerSlot)
        slotUnits = .allocate(capacity: depth)
        slotUnits.initialize(repeating: -1, count: depth)
    }

    deinit {
        vectors.deallocate()
        slotUnits.deallocate()
    }

    func submit(slot: Int, on queue: OpaquePointer, now: UInt64) -> Bool {
        guard mismatch == nil, nextUnit < unitCount else { return false }
        let unit = nextUnit
        nextUnit += stride
        slotUnits[slot] = unit
        let offset = UInt64(unit) * UInt64(unitSize)
        let length = Int(min(UInt64(unitSize), regionSize - offset))
        let buffer = buffers + slot * unitSize
        let iov = vectors + slot * vectorsPerSlot
        let vectored = unit % 2 == 1 && length > patternBlock
        switch phase {
        case .write:
            for b in 0..<(length / patternBlock) {
                stampBlock(buffer + b * patternBlock, offset: offset + UInt64(b * patternBlock), seed: seed)
            }
            if vectored {
                let first = length / patternBlock / 2 * patternBlock
                iov[0] = iovec(iov_base: buffer, iov_len: first)
                iov[1] = iovec(iov_base: buffer + first, iov_len: length - first)
                blkioq_writev(queue, offset, iov, 2, slotTag(slot), 0)
            } else {
                blkioq_write(queue, offset, buffer, length, slotTag(slot), 0)
            }
        case .read:
            memset(buffer, 0xA5, length)
            if vectored {
                let count = length / patternBlock
                for b in 0..<count {
                    iov[b] = iovec(iov_base: buffer + b * patternBlock, iov_len: patternBlock)
                }
                blkioq_readv(queue, offset, iov, Int32(count), slotTag(slot), 0)
            } else {
                blkioq_read(queue, offset, buffer, length, slotTag(slot), 0)
            }
        }
        return true
    }

    func complete(slot: Int, result: Int32, now: UInt64) {
        let unit = slotUnits[slot]
        let offset = UInt64(unit) * UInt64(unitSize)
        let blocks = Int(min(UInt64(unitSize), regionSize - offset)) / patternBlock
        blocksDone += blocks
        guard phase == .read, mismatch == nil else { return }
        let buffer = buffers + slot * unitSize
        for b in 0..<blocks {
            let at = offset + UInt64(b * patternBlock)
            if let why = checkBlock(buffer + b * patternBlock, offset: at, seed: seed) {
                mismatch = "block at offset \(at) (unit \(unit), \(unit % 2 == 1 ? "vectored" : "single-buffer") read): \(why)"
                return
            }
        }
    }
}
