// `run`'s job: keep a lane's slots busy until the deadline; count and time the completions that land
// in the measured window (after the ramp-up, before the deadline).
import CBlkio

final class LoadJob: QueueJob {
    private let isRead: Bool
    private let blockSize: Int
    private let buffers: UnsafeMutableRawPointer
    private let starts: UnsafeMutablePointer<UInt64>
    private var offsets: OffsetStream
    private let measureFrom: UInt64
    private let deadline: UInt64
    let histogram = LatencyHistogram()
    private(set) var completed: UInt64 = 0

    /// `buffers` holds depth × blockSize bytes of mapped memory for this lane.
    init(workload: Workload, blockSize: Int, depth: Int, buffers: UnsafeMutableRawPointer,
         offsets: OffsetStream, measureFrom: UInt64, deadline: UInt64) {
        isRead = workload.isRead
        self.blockSize = blockSize
        self.buffers = buffers
        self.offsets = offsets
        self.measureFrom = measureFrom
        self.deadline = deadline
        starts = .allocate(capacity: depth)
        starts.initialize(repeating: 0, count: depth)
    }

    deinit { starts.deallocate() }

    @inline(__always)
    func submit(slot: Int, on queue: OpaquePointer, now: UInt64) -> Bool {
        guard now < deadline else { return false }
        starts[slot] = now
        let buffer = buffers + slot * blockSize
        let offset = offsets.next()
        if isRead {
            blkioq_read(queue, offset, buffer, blockSize, slotTag(slot), 0)
        } else {
            blkioq_write(queue, offset, buffer, blockSize, slotTag(slot), 0)
        }
        return true
    }

    @inline(__always)
    func complete(slot: Int, result: Int32, now: UInt64) {
        guard now >= measureFrom, now < deadline else { return }
        histogram.record(now &- starts[slot])
        completed &+= 1
    }
}
