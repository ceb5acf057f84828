// `run`: a fixed-length load on every queue, one summary line on stdout.

private let runOptions: Set<String> = [
    "socket", "workload", "bs", "depth", "queues", "seconds", "ramp", "size", "threads", "cpus", "queue-size",
]

/// Threads to use: the explicit --threads, else one per queue but no more than the CPUs the
/// process may run on (two busy-polling threads sharing one CPU only steal each other's slices).
func threadCount(_ args: Arguments, queues: Int, cpus: [Int]?) throws -> Int {
    let available = max(1, cpus?.count ?? allowedCPUs().count)
    let threads = try args.int("threads", min(queues, available))
    guard threads >= 1, threads <= queues else { throw UsageError(description: "--threads must be 1...\(queues)") }
    return threads
}

/// Lanes 0..<n dealt to `threads` threads: thread t gets lanes t, t + threads, ….
func deal<T>(_ lanes: [T], to threads: Int) -> [[T]] {
    (0..<threads).map { t in Swift.stride(from: t, to: lanes.count, by: threads).map { lanes[$0] } }
}

func runCommand(_ args: Arguments) throws {
    try args.checkKnown(runOptions)
    let socket = try args.required("socket")
    let workloadName = args.string("workload") ?? "randread"
    guard let workload = Workload(rawValue: workloadName) else {
        throw UsageError(description: "--workload: unknown workload \(workloadName)")
    }
    let blockSize = Int(try args.bytes("bs") ?? 4096)
    guard blockSize >= 512, blockSize % 512 == 0 else { throw UsageError(description: "--bs must be a multiple of 512") }
    let depth = try args.int("depth", 1)
    let queues = try args.int("queues", 1)
    guard depth >= 1, queues >= 1 else { throw UsageError(description: "--depth and --queues must be at least 1") }
    let seconds = try args.double("seconds", 10)
    let ramp = try args.double("ramp", 0.5)
    let cpus = try args.cpus("cpus")
    let threads = try threadCount(args, queues: queues, cpus: cpus)
    let queueSize = try args.string("queue-size").map { _ in try args.int("queue-size", 256) }

    let device = try BlockDevice(socket: socket, queueCount: queues, queueSize: queueSize)
    defer { device.close() }
    let regionSize = try args.bytes("size") ?? device.capacity
    guard regionSize >= UInt64(blockSize), regionSize <= device.capacity else {
        throw UsageError(description: "--size \(regionSize): the device has \(device.capacity) bytes")
    }
    // A running guest has flushed (a journal commit) within seconds of boot, and some stores' write
    // caches wait for that first flush before they cache writes (librbd's is write-through until then):
    // measure the mode a guest runs in, whatever the daemon did before this connection.
    try device.flush()
    let laneBytes = depth * blockSize
    let memory = try device.map(length: queues * laneBytes)

    let start = monotonicNanoseconds()
    let measureFrom = start + nanoseconds(ramp)
    let deadline = measureFrom + nanoseconds(seconds)
    let lanes = (0..<queues).map { q in
        Lane(queue: device.queues[q], job: LoadJob(
            workload: workload, blockSize: blockSize, depth: depth, buffers: memory.base + q * laneBytes,
            offsets: OffsetStream(workload: workload, blockSize: blockSize, regionSize: regionSize, lane: q, lanes: queues),
            measureFrom: measureFrom, deadline: deadline))
    }
    let groups = Handoff(value: deal(lanes, to: threads))
    runOnThreads(threads, cpus: cpus) { t in drive(groups.value[t], depth: depth) }

    let histogram = LatencyHistogram()
    var completed: UInt64 = 0
    for lane in lanes {
        histogram.merge(lane.job.histogram)
        completed += lane.job.completed
    }
    let iops = seconds > 0 ? Double(completed) / seconds : 0
    let mbps = iops * Double(blockSize) / 1e6
    func micros(_ fraction: Double) -> String { fixed(Double(histogram.percentile(fraction)) / 1000, 1) }
    print("iops=\(fixed(iops, 0)) mbps=\(fixed(mbps, 1)) p50_us=\(micros(0.5)) p99_us=\(micros(0.99))"
        + " p999_us=\(micros(0.999)) ios=\(completed) seconds=\(fixed(seconds, 1)) workload=\(workload.rawValue)"
        + " bs=\(blockSize) depth=\(depth) queues=\(queues) threads=\(threads)")
}
