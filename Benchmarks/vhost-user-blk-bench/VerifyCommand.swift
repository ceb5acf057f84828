// `verify`: write a seeded pattern over the region from every queue, read it back through a
// different queue, check every block; repeat with a new seed until the time is up.
#if canImport(Glibc)
import Glibc
#endif

private let verifyOptions: Set<String> = [
    "socket", "queues", "depth", "bs", "size", "seconds", "threads", "cpus", "seed", "queue-size",
]

func verifyCommand(_ args: Arguments) throws {
    try args.checkKnown(verifyOptions)
    let socket = try args.required("socket")
    let queues = try args.int("queues", 1)
    let depth = try args.int("depth", 32)
    guard depth >= 1, queues >= 1 else { throw UsageError(description: "--depth and --queues must be at least 1") }
    let unitSize = Int(try args.bytes("bs") ?? 16384)
    guard unitSize >= patternBlock, unitSize % patternBlock == 0 else {
        throw UsageError(description: "--bs must be a multiple of \(patternBlock)")
    }
    let seconds = try args.double("seconds", 0)
    let cpus = try args.cpus("cpus")
    let threads = try threadCount(args, queues: queues, cpus: cpus)
    let queueSize = try args.string("queue-size").map { _ in try args.int("queue-size", 256) }
    let firstSeed = UInt64(try args.int("seed", Int(truncatingIfNeeded: monotonicNanoseconds() | 1)))

    let device = try BlockDevice(socket: socket, queueCount: queues, queueSize: queueSize)
    defer { device.close() }
    let regionSize = try args.bytes("size") ?? device.capacity
    guard regionSize > 0, regionSize % UInt64(patternBlock) == 0, regionSize <= device.capacity else {
        throw UsageError(description: "--size \(regionSize): must be a multiple of \(patternBlock), at most \(device.capacity)")
    }
    let laneBytes = depth * unitSize
    let memory = try device.map(length: queues * laneBytes)
    let blocks = regionSize / UInt64(patternBlock)

    let start = monotonicNanoseconds()
    var passes = 0
    repeat {
        let seed = firstSeed &+ UInt64(passes) &* 0x9E37_79B9
        for phase in [VerifyJob.Phase.write, .read] {
            let lanes = (0..<queues).map { q in
                Lane(queue: device.queues[q], job: VerifyJob(
                    phase: phase, seed: seed, unitSize: unitSize, regionSize: regionSize,
                    firstUnit: phase == .write ? q : (q + 1) % queues, stride: queues,
                    depth: depth, buffers: memory.base + q * laneBytes))
            }
            let groups = Handoff(value: deal(lanes, to: threads))
            runOnThreads(threads, cpus: cpus) { t in drive(groups.value[t], depth: depth) }
            if let (q, why) = lanes.enumerated().lazy.compactMap({ i, l in l.job.mismatch.map { (i, $0) } }).first {
                print("verify: MISMATCH pass=\(passes + 1) seed=0x\(hex(seed)) queue=\(q): \(why)")
                device.close()
                exit(1)
            }
            let done = lanes.reduce(0) { $0 + $1.job.blocksDone }
            guard done == Int(blocks) else { fail("internal: \(phase) pass covered \(done) of \(blocks) blocks") }
        }
        passes += 1
    } while Double(monotonicNanoseconds() - start) / 1e9 < seconds
    let elapsed = Double(monotonicNanoseconds() - start) / 1e9
    print("verify: OK blocks=\(blocks) passes=\(passes) queues=\(queues) depth=\(depth) bs=\(unitSize) seconds=\(fixed(elapsed, 1))")
}
