import VhostUserKit

/// Event buffers the driver made available on the eventq, taken off the ring and held until a whole
/// batch can be written: a driver passes each event to its input core as it arrives, so half a batch
/// would reach the guest's applications as half a report. Each holds the guest addresses of its 8
/// bytes, valid while the group runs; storage is fixed when the group starts, so taking and filling
/// buffers allocates nothing.
struct HeldBuffers {
    /// At most this many segments for one 8-byte event (a driver splitting it further is refused).
    static let maxSegments = 4
    let capacity: Int
    private var heads: [UInt16]
    private var segments: [UnsafeMutableRawBufferPointer]
    private var segmentCounts: [Int]
    private var first = 0
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        heads = [UInt16](repeating: 0, count: capacity)
        segments = [UnsafeMutableRawBufferPointer](repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0), count: capacity * Self.maxSegments)
        segmentCounts = [Int](repeating: 0, count: capacity)
    }

    var isFull: Bool { count == capacity }

    /// Holds `chain` if it can take an event (8 writable bytes in at most `maxSegments` segments).
    mutating func hold(_ chain: DescriptorChain) -> Bool {
        guard chain.writableLength >= InputEvent.size, !isFull else { return false }
        let slot = (first + count) % capacity
        var covered = 0, n = 0
        for segment in chain.writable where covered < InputEvent.size && segment.count > 0 {
            guard n < Self.maxSegments else { return false }
            segments[slot * Self.maxSegments + n] = segment
            covered += segment.count
            n += 1
        }
        heads[slot] = chain.head
        segmentCounts[slot] = n
        count += 1
        return true
    }

    /// Writes `event` into the oldest buffer and gives back its head for completion.
    mutating func fill(with event: InputEvent) -> UInt16 {
        precondition(count > 0)
        let slot = first
        var packed = event.packed.littleEndian
        withUnsafeBytes(of: &packed) { bytes in
            var done = 0
            for i in 0..<segmentCounts[slot] where done < bytes.count {
                let segment = segments[slot * Self.maxSegments + i]
                let n = min(segment.count, bytes.count - done)
                segment.baseAddress!.copyMemory(from: bytes.baseAddress! + done, byteCount: n)
                done += n
            }
        }
        first = (first + 1) % capacity
        count -= 1
        return heads[slot]
    }
}
