import CVhostUser

/// Records which chains are in flight in the shared inflight region (vhost-user spec, "Inflight I/O
/// tracking", split virtqueues), so that a back-end killed and started again resubmits exactly the
/// requests the guest has not seen completed: none lost, none completed twice.
///
/// Region layout for one queue: features (u64), version (u16), desc_num (u16), last_batch_head (u16),
/// used_idx (u16), then per descriptor: inflight (u8), padding (5), next (u16), counter (u64).
struct InflightTracker {
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private var counter: UInt64 = 0

    static let version: UInt16 = 1
    private static let headerSize = 16
    private static let stateSize = 16

    /// Attaches to one queue's part of the region (`recover` then prepares it).
    init(region: UnsafeMutableRawPointer, size: Int) {
        base = region
        self.size = size
    }

    private func state(_ head: UInt16) -> UnsafeMutableRawPointer { base + Self.headerSize + Int(head) * Self.stateSize }
    private var versionField: UnsafeMutableRawPointer { base + 8 }
    private var descNumField: UnsafeMutableRawPointer { base + 10 }
    private var lastBatchHeadField: UnsafeMutableRawPointer { base + 12 }
    private var usedIndexField: UnsafeMutableRawPointer { base + 14 }

    /// Prepares the region when the queue starts and returns the heads to resubmit, oldest first.
    mutating func recover(usedIndex: UInt16) -> [UInt16] {
        if versionField.load(as: UInt16.self) != Self.version || Int(descNumField.load(as: UInt16.self)) != size {
            base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.headerSize + size * Self.stateSize)
            versionField.storeBytes(of: Self.version, as: UInt16.self)
            descNumField.storeBytes(of: UInt16(truncatingIfNeeded: size), as: UInt16.self)
            usedIndexField.storeBytes(of: usedIndex, as: UInt16.self)
            return []
        }
        // The last batch reached the used ring but its in-flight marks were not cleared yet.
        let recorded = usedIndexField.load(as: UInt16.self)
        if recorded != usedIndex {
            var head = lastBatchHeadField.load(as: UInt16.self)
            for _ in 0..<min(Int(usedIndex &- recorded), size) where Int(head) < size {
                state(head).storeBytes(of: UInt8(0), as: UInt8.self)
                head = state(head).load(fromByteOffset: 6, as: UInt16.self)
            }
            usedIndexField.storeBytes(of: usedIndex, as: UInt16.self)
        }
        var pending: [(head: UInt16, counter: UInt64)] = []
        for head in 0..<UInt16(truncatingIfNeeded: size) where state(head).load(as: UInt8.self) == 1 {
            pending.append((head, state(head).load(fromByteOffset: 8, as: UInt64.self)))
        }
        pending.sort { $0.counter < $1.counter }
        counter = (pending.last?.counter ?? 0) &+ 1
        return pending.map(\.head)
    }

    /// A chain was taken from the available ring.
    @inline(__always)
    mutating func taken(_ head: UInt16) {
        let s = state(head)
        s.storeBytes(of: counter, toByteOffset: 8, as: UInt64.self)
        counter &+= 1
        vhu_fence_release()
        s.storeBytes(of: UInt8(1), as: UInt8.self)
    }

    /// A chain was put in the used ring (not yet published): link it into the current batch.
    @inline(__always)
    func completed(_ head: UInt16) {
        state(head).storeBytes(of: lastBatchHeadField.load(as: UInt16.self), toByteOffset: 6, as: UInt16.self)
        vhu_fence_release()
        lastBatchHeadField.storeBytes(of: head, as: UInt16.self)
    }

    /// The used index was published: clear the batch's marks, then record the new used index.
    @inline(__always)
    func published(batch count: Int, usedIndex: UInt16) {
        vhu_fence_release()
        var head = lastBatchHeadField.load(as: UInt16.self)
        for _ in 0..<count where Int(head) < size {
            state(head).storeBytes(of: UInt8(0), as: UInt8.self)
            head = state(head).load(fromByteOffset: 6, as: UInt16.self)
        }
        vhu_fence_release()
        usedIndexField.storeBytes(of: usedIndex, as: UInt16.self)
    }

    /// Bytes one queue of `size` descriptors needs (before the 64-byte rounding of the region).
    static func bytes(queueSize size: Int) -> Int { headerSize + stateSize * size }
}
