// The polling loop shared by `run` and `verify`: a thread owns a few lanes (a queue and the job that
// feeds it), keeps every slot of every lane busy, and polls each queue in turn with
// blkioq_do_io(min_completions: 0) until no lane has a request in flight.
import CBlkio
#if canImport(Glibc)
import Glibc
#endif

/// What a lane's requests are. Slots are 0..<depth; a slot has at most one request in flight.
protocol QueueJob: AnyObject {
    /// Queues slot's next request on `queue` (user_data must be `slotTag(slot)`), or returns false
    /// when this slot has no more work.
    func submit(slot: Int, on queue: OpaquePointer, now: UInt64) -> Bool
    /// Slot's request finished with `result` (0, or a negative errno) at `now`.
    func complete(slot: Int, result: Int32, now: UInt64)
}

@inline(__always)
func slotTag(_ slot: Int) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: slot + 1) }

final class Lane<Job: QueueJob>: @unchecked Sendable {
    let queue: OpaquePointer
    let job: Job
    fileprivate(set) var inflight = 0

    init(queue: QueueHandle, job: Job) {
        self.queue = queue.pointer
        self.job = job
    }
}

/// Hands objects built on the main thread to a worker thread (which then owns them until join).
struct Handoff<T>: @unchecked Sendable {
    let value: T
}

/// Drives `lanes` until all are drained. Fails when no request completes for `stallSeconds`.
func drive<Job: QueueJob>(_ lanes: [Lane<Job>], depth: Int, stallSeconds: Double = 10) {
    let completions = UnsafeMutablePointer<blkio_completion>.allocate(capacity: depth)
    defer { completions.deallocate() }
    var now = monotonicNanoseconds()
    for lane in lanes {
        for slot in 0..<depth where lane.job.submit(slot: slot, on: lane.queue, now: now) {
            lane.inflight += 1
        }
    }
    var busy = lanes.contains { $0.inflight > 0 }
    var lastProgress = now
    var idlePolls = 0
    let stall = nanoseconds(stallSeconds)
    while busy {
        busy = false
        var progressed = false
        for lane in lanes where lane.inflight > 0 {
            busy = true
            let n = blkioq_do_io(lane.queue, completions, 0, Int32(depth), nil)
            if n < 0 { fail("\(blkioFailure(n, "blkioq_do_io"))") }
            if n == 0 { continue }
            progressed = true
            now = monotonicNanoseconds()
            for k in 0..<Int(n) {
                let c = completions[k]
                let slot = Int(bitPattern: c.user_data) - 1
                if c.ret != 0 {
                    let detail = c.error_msg.map { String(cString: $0) } ?? String(cString: strerror(-c.ret))
                    fail("request failed: \(detail) (\(c.ret))")
                }
                lane.job.complete(slot: slot, result: c.ret, now: now)
                if !lane.job.submit(slot: slot, on: lane.queue, now: now) { lane.inflight -= 1 }
            }
        }
        if progressed {
            lastProgress = now
            idlePolls = 0
        } else {
            idlePolls += 1
            if idlePolls & 0xFFF == 0, monotonicNanoseconds() &- lastProgress > stall {
                let stuck = lanes.reduce(0) { $0 + $1.inflight }
                fail("no request completed for \(stallSeconds) s (\(stuck) in flight): is the daemon alive?")
            }
        }
    }
}
