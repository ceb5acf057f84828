// vhost-user-snd-bench (a benchmark, not a test): how many 48 kHz stereo S16 playback streams one
// vhost-user-snd device sustains without an underrun (null backend, the fake front-end keeping three
// 10 ms periods queued per stream), and the device's CPU time per stream, against a reference
// measured in the same run: one thread that wakes on absolute 10 ms deadlines and does the same
// copies (a period per stream out of a source buffer, scaled by a volume) and nothing else.
//
//   vhost-user-snd-bench [--seconds S] [--streams 1,16,64,128,256]
//
// A stream underruns when a period comes due and its queued buffers hold less than a period; the
// device counts those (`StreamStatus.underruns`) and the largest lateness of a period.
import BenchmarkSupport
import SoundDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

let options = BenchmarkArguments(CommandLine.arguments.dropFirst())
let periodBytes = 1920  // 480 frames of 4 bytes: 10 ms at 48 kHz
let buffersPerStream = 3

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

/// CPU seconds of this process's threads whose name starts with `prefix` (from /proc/self/task).
func threadCPU(prefix: String) -> Double {
    guard let dir = opendir("/proc/self/task") else { return 0 }
    defer { closedir(dir) }
    var total = 0.0
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        guard tid.first?.isNumber == true, let comm = readSmall("/proc/self/task/\(tid)/comm"), comm.hasPrefix(prefix),
              let stat = readSmall("/proc/self/task/\(tid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
        if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
            total += (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
    }
    return total
}

func readSmall(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 1024)
    let n = read(fd, &buffer, buffer.count)
    return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
}

struct Outcome {
    var underruns: UInt64 = 0
    var maxLatenessMs = 0.0
    var cpuSeconds = 0.0
    var periods: UInt64 = 0
}

/// `count` playback streams through the device for `seconds`.
func throughDevice(streams count: Int, seconds: Double) throws -> Outcome {
    let spec = try StreamSpec.parse("channels=2:formats=s16:rates=48000", direction: .output)
    let device = SoundDevice(streams: Array(repeating: spec, count: count), backend: NullBackend(), controls: true, jacks: false,
                             periodEvents: false)
    let size = 1024
    let fixture = try DeviceFixture(device, queueSizes: [64, 64, size, 64], memorySize: 64 << 20)
    defer { fixture.daemon.stop() }
    let controlq = fixture.queues[0], txq = fixture.queues[2]
    let request = fixture.memory.allocate(64), response = fixture.memory.allocate(64)
    func control(_ bytes: [UInt8]) throws {
        fixture.memory.write(bytes, at: request)
        controlq.submit([.readable(request, bytes.count), .writable(response, 4)])
        controlq.notifyDevice()
        _ = try controlq.waitForUsed(1)
        guard fixture.memory.read(response, count: 4) == le(UInt32(0x8000)) else { throw SoundBackendError("request \(bytes.prefix(8)) refused") }
    }
    // Each chain's buffers by head, to offer it again when it comes back.
    var chains = [[BufferSpec]](repeating: [], count: size)
    var underrunsBefore: UInt64 = 0
    for stream in 0..<count {
        try control(le(UInt32(0x101)) + le(UInt32(stream)) + le(UInt32(periodBytes * 4)) + le(UInt32(periodBytes)) + le(UInt32(0)) + [2, 5, 7, 0])
        try control(le(UInt32(0x102)) + le(UInt32(stream)))
        for _ in 0..<buffersPerStream {
            let header = fixture.memory.allocate(4), data = fixture.memory.allocate(periodBytes), status = fixture.memory.allocate(8)
            fixture.memory.write(le(UInt32(stream)), at: header)
            let buffers: [BufferSpec] = [.readable(header, 4), .readable(data, periodBytes), .writable(status, 8)]
            chains[Int(txq.submit(buffers, indirect: true))] = buffers
        }
        txq.notifyDevice()
    }
    for stream in 0..<count { try control(le(UInt32(0x104)) + le(UInt32(stream))) }
    for stream in 0..<count { underrunsBefore += device.status(ofStream: stream).underruns }
    let cpuBefore = threadCPU(prefix: "vhu-queue")
    let start = now()
    while now() - start < seconds {
        for element in try txq.waitForUsed(1) {
            let buffers = chains[Int(element.id)]
            chains[Int(txq.submit(buffers, indirect: true))] = buffers
        }
        txq.notifyDevice()
    }
    var outcome = Outcome()
    outcome.cpuSeconds = threadCPU(prefix: "vhu-queue") - cpuBefore
    for stream in 0..<count {
        let status = device.status(ofStream: stream)
        outcome.underruns += status.underruns
        outcome.periods += status.periods
        outcome.maxLatenessMs = max(outcome.maxLatenessMs, Double(status.maxLateness) / 1e6)
    }
    outcome.underruns -= underrunsBefore
    return outcome
}

/// The reference: the same copies on absolute 10 ms deadlines in a plain thread; its CPU seconds.
func plainTimerLoop(streams count: Int, seconds: Double) -> Double {
    let cpu = Locked(0.0)
    let thread = PosixThread(name: "bench-reference") {
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: periodBytes * count, alignment: 16)
        let period = UnsafeMutableRawBufferPointer.allocate(byteCount: periodBytes, alignment: 16)
        defer { source.deallocate(); period.deallocate() }
        source.initializeMemory(as: UInt8.self, repeating: 1)
        func threadSeconds() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let before = threadSeconds()
        let start = monotonicNanoseconds()
        var n: UInt64 = 0
        while Double(monotonicNanoseconds() - start) / 1e9 < seconds {
            n += 1
            let deadline = start + n * 10_000_000
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil)
            for stream in 0..<count {
                period.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[(stream * periodBytes)..<((stream + 1) * periodBytes)]))
                SampleFormat.s16.scale(period, by: 0.5)
            }
        }
        let elapsed = threadSeconds() - before
        cpu.withLock { $0 = elapsed }
    }
    thread.join()
    return cpu.withLock { $0 }
}

let seconds = options.double("seconds", 3)
let counts = options.string("streams", "1,16,64,128,256").split(separator: ",").compactMap { Int($0) }
print("48 kHz stereo S16 playback, 10 ms periods, \(buffersPerStream) queued per stream, null backend, \(seconds) s each")
print("streams  underruns  max-late-ms  device-cpu-us/stream/s  reference-cpu-us/stream/s  ratio")
var sustained = 0
for count in counts {
    let outcome = try throughDevice(streams: count, seconds: seconds)
    let reference = plainTimerLoop(streams: count, seconds: seconds)
    let perStream = outcome.cpuSeconds / seconds / Double(count) * 1e6
    let referencePerStream = reference / seconds / Double(count) * 1e6
    let ratio = referencePerStream > 0 ? perStream / referencePerStream : .infinity
    print("\(count)\t \(outcome.underruns)\t    \((outcome.maxLatenessMs * 10).rounded() / 10)\t\t \((perStream * 10).rounded() / 10)\t\t\t  \((referencePerStream * 10).rounded() / 10)\t\t\t     \((ratio * 100).rounded() / 100)")
    if outcome.underruns == 0 { sustained = count }
}
print("sustained without an underrun: \(sustained) streams (the largest count tried with none)")
