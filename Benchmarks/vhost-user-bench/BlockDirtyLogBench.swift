import BenchmarkSupport
import BlockDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-blk 4 KiB random reads with live migration's dirty logging on, against the same with it
/// off, in the same run: a fake VMM drives the daemon's rings (libblkio, the client of
/// scripts/bench-blk, cannot turn logging on), runs alternate between off and on `rounds` times, and
/// each mode's best run counts.
func runBlockDirtyLogBench(_ a: BenchmarkArguments) throws {
    let seconds = a.double("seconds", 2), depth = a.int("depth", 32), rounds = a.int("rounds", 3)
    let path = a.string("file", "/dev/shm/vhost-user-blk-log-bench.img"), size = a.int("size-mib", 256) << 20
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0, ftruncate(fd, off_t(size)) == 0 else { throw BenchError("cannot make \(path)") }
    // Data in every block, so a read moves real bytes.
    let block = [UInt8](repeating: 0xa5, count: 1 << 20)
    for offset in stride(from: 0, to: size, by: block.count) { _ = pwrite(fd, block, block.count, off_t(offset)) }
    close(fd)
    defer { unlink(path) }

    var best: [Bool: Double] = [:]
    for _ in 0..<rounds {
        for logging in [false, true] {
            let iops = try blockRandomReads(path: path, size: size, seconds: seconds, depth: depth, logging: logging)
            best[logging] = max(best[logging] ?? 0, iops)
        }
    }
    print("blk: 4 KiB random reads, depth \(depth), \(size >> 20) MiB file on \(path), \(rounds) x \(seconds) s per mode")
    print("  dirty logging off: \(fixed(best[false]! / 1000, 1)) kIOPS")
    print("  dirty logging on:  \(fixed(best[true]! / 1000, 1)) kIOPS")
    print("  ratio on/off: \(fixed(best[true]! / best[false]!, 3))")
}

/// IOPS of one run: `depth` reads in flight, each resubmitted at a random block as it completes.
func blockRandomReads(path: String, size: Int, seconds: Double, depth: Int, logging: Bool) throws -> Double {
    var options = BlockDevice.Options()
    options.queueSize = 128
    let device = try BlockDevice(backend: try BlockBackend(target: .file(path)), options: options)
    let fixture = try DeviceFixture(device, queueSizes: [128], memorySize: 16 << 20)
    defer { fixture.daemon.stop() }
    let memory = fixture.memory, q = fixture.queue
    let log = logging ? try FakeDirtyLog(coveringBytes: memory.regions[0].guestPhysicalAddress + UInt64(memory.size)) : nil
    if let log { try fixture.frontend.startDirtyLogging(log, queues: [q]) }
    struct Slot { let header: UInt64, data: UInt64, status: UInt64 }
    let slots = (0..<depth).map { _ in Slot(header: memory.allocate(16), data: memory.allocate(4096, alignment: 4096), status: memory.allocate(1)) }
    var slotOfHead: [UInt16: Int] = [:]
    var random = SystemRandomNumberGenerator()
    let blocks = UInt64(size / 4096)
    func submit(_ i: Int) {
        var header = [UInt8](repeating: 0, count: 16)
        let sector = UInt64.random(in: 0..<blocks, using: &random) * 8
        for b in 0..<8 { header[8 + b] = UInt8(truncatingIfNeeded: sector >> (8 * b)) }
        memory.write(header, at: slots[i].header)
        let head = q.submit([.readable(slots[i].header, 16), .writable(slots[i].data, 4096), .writable(slots[i].status, 1)])
        slotOfHead[head] = i
    }
    for i in 0..<depth { submit(i) }
    q.notifyDevice()
    var completed = 0
    let start = now()
    while now() - start < seconds {
        for element in try q.waitForUsed(1) {
            guard element.length == 4097, memory.read(slots[slotOfHead[UInt16(element.id)]!].status, count: 1) == [0] else {
                throw BenchError("a read failed: used length \(element.length)")
            }
            completed += 1
            submit(slotOfHead[UInt16(element.id)]!)
        }
        q.notifyDevice()
    }
    let iops = Double(completed) / (now() - start)
    // Every data buffer was written while logging: its page must be marked.
    if let log {
        let dirty = Set(log.takeDirtyPages())
        guard slots.allSatisfy({ dirty.contains($0.data / 4096) }) else { throw BenchError("logging was on, but data pages are not in the log") }
    }
    return iops
}
