// Worker threads: plain pthreads (each one busy-polls its queues), optionally pinned to one CPU.
import CBlkio
#if canImport(Glibc)
import Glibc
#endif

private final class ThreadStart: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// The CPUs the process may run on (its affinity mask).
func allowedCPUs() -> [Int] {
    var mask = [UInt64](repeating: 0, count: 16)  // 1024 CPUs
    let rc = mask.withUnsafeMutableBytes { cblkio_sched_getaffinity(0, $0.count, $0.baseAddress) }
    guard rc == 0 else { return [] }
    var cpus: [Int] = []
    for (w, word) in mask.enumerated() {
        for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 { cpus.append(w * 64 + bit) }
    }
    return cpus
}

/// Pins the calling thread to `cpu`.
func pinCurrentThread(to cpu: Int) throws {
    var mask = [UInt64](repeating: 0, count: 16)
    guard cpu >= 0, cpu < mask.count * 64 else { throw UsageError(description: "CPU \(cpu) out of range") }
    mask[cpu / 64] |= 1 << UInt64(cpu % 64)
    let rc = mask.withUnsafeMutableBytes { cblkio_sched_setaffinity(0, $0.count, $0.baseAddress) }
    if rc != 0 { throw UsageError(description: "cannot pin a thread to CPU \(cpu): \(String(cString: strerror(errno)))") }
}

/// Runs `body(i)` for i in 0..<count on `count` threads (thread i pinned to cpus[i] when given)
/// and waits for all of them.
func runOnThreads(_ count: Int, cpus: [Int]?, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for i in 0..<count {
        let cpu = cpus.map { $0[i % $0.count] }
        let start = Unmanaged.passRetained(ThreadStart {
            if let cpu {
                do { try pinCurrentThread(to: cpu) } catch { fail("\(error)") }
            }
            body(i)
        }).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, start)
        if rc != 0 { fail("pthread_create: \(String(cString: strerror(rc)))") }
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

/// Prints to stderr and exits with status 2 (a setup or I/O failure, not a verification mismatch).
func fail(_ message: String, status: Int32 = 2) -> Never {
    var line = "vhost-user-blk-bench: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(status)
}
