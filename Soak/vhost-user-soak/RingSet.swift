import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Guest memory and the rings in it, as a VMM keeps them across reconnects of one back-end: a
/// reconnect may resume them (same rings, same requests in flight) or the soak may give them up and
/// lay out new ones.
final class RingSet {
    let memory: FakeGuestMemory
    let queues: [DriverQueue]
    /// Features the front-end declines on these rings (EVENT_IDX, INDIRECT_DESC), fixed for their life.
    let maskFeatures: UInt64
    /// Whether connections on these rings share the inflight region (when the daemon offers it).
    let useInflight: Bool
    /// The region the daemon handed out, kept for later connections.
    var inflight: SharedInflightRegion?
    /// Where each ring stopped when the last connection ended with GET_VRING_BASE; nil after a plain
    /// drop (a VMM then resumes at the used index, as QEMU does when it cannot ask).
    var stoppedBases: [UInt16]?
    /// After the daemon was killed: per queue, the heads in flight that the inflight region marks,
    /// which the next process must resubmit.
    var expectedResubmissions: [Set<UInt16>]?

    init(queueCount: Int, queueSize: Int, regionCount: Int, slabBytes: Int, maskFeatures: UInt64, useInflight: Bool) throws {
        let slots = min(64, queueSize / 2)
        let perQueue = DriverQueue.memoryNeeded(size: queueSize, slabBytes: slabBytes, slots: slots)
        // Region 0 holds every ring and indirect table plus its share of slabs; round each region up.
        let regionBytes = ((perQueue * queueCount) / regionCount + perQueue + (64 << 10) + 0xfffff) & ~0xfffff
        let memory = try FakeGuestMemory(size: regionBytes * regionCount, regionCount: regionCount)
        self.memory = memory
        queues = try (0..<queueCount).map {
            try DriverQueue(index: $0, size: queueSize, memory: memory, slabBytes: slabBytes, slots: slots)
        }
        self.maskFeatures = maskFeatures
        self.useInflight = useInflight
    }

    var outstandingCount: Int { queues.reduce(0) { $0 + $1.outstandingCount } }

    /// The base each ring resumes at on the next connection.
    var resumeBases: [UInt16] { stoppedBases ?? queues.map { $0.ring.publishedUsedIndex } }

    /// Heads that the shared inflight region marks as in flight, per queue (empty sets without a region).
    func markedInFlight() -> [Set<UInt16>] {
        guard let inflight, let mapped = try? InflightRegion(inflight.description, file: OwnedDescriptor(dup(inflight.file.rawValue))) else {
            return queues.map { _ in [] }
        }
        let stride = InflightRegion.queueRegionSize(queueSize: Int(inflight.description.queueSize))
        return queues.map { q in
            let base = mapped.base + q.ring.index * stride
            // Header: features (u64), version (u16), desc_num (u16), last_batch_head, used_idx; then 16 bytes a head.
            guard base.load(fromByteOffset: 8, as: UInt16.self) == 1 else { return [] }
            let count = Int(base.load(fromByteOffset: 10, as: UInt16.self))
            return Set((0..<count).compactMap { h in base.load(fromByteOffset: 16 + 16 * h, as: UInt8.self) == 1 ? UInt16(h) : nil })
        }
    }
}
