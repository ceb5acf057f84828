// Benchmarks (not tests). Each prints its numbers and a ratio against a reference measured in the same run.
//
//   vhost-user-bench rng [--seconds S] [--buffer BYTES] [--depth N] [--source PATH]
//   vhost-user-bench i2c [--seconds S] [--length BYTES] [--depth N]
//   vhost-user-bench gpio [--iterations N]
//   vhost-user-bench console [--seconds S] [--buffer BYTES] [--depth N]
//   vhost-user-bench blk-log [--seconds S] [--depth N] [--rounds N] [--file PATH] [--size-mib N]
//   vhost-user-bench vsock [--seconds S] [--message BYTES] [--depth N] [--rounds N]
import RNGDevice
import BenchmarkSupport
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

typealias Arguments = BenchmarkArguments

/// Entropy through the whole vhost-user path: fake driver → socket-configured rings → daemon worker
/// thread → source read into guest memory → used ring → call eventfd.
func rngThroughDaemon(seconds: Double, buffer: Int, depth: Int, source: String) throws -> Double {
    let fixture = try DeviceFixture(try RNGDevice(source: .file(source)), queueSizes: [max(16, depth.nextPowerOfTwo)],
                                    memorySize: max(4 << 20, (buffer * depth * 2 + 4095) & ~4095 + (1 << 20)))
    defer { fixture.daemon.stop() }
    let memory = fixture.memory, q = fixture.queue
    let buffers = (0..<depth).map { _ in memory.allocate(buffer, alignment: 4096) }
    for b in buffers { q.submit([.writable(b, buffer)]) }
    q.notifyDevice()
    var bytes = 0
    let start = now()
    var next = 0
    while now() - start < seconds {
        for element in try q.waitForUsed(1) {
            bytes += Int(element.length)
            q.submit([.writable(buffers[next % depth], buffer)])
            next += 1
        }
        q.notifyDevice()
    }
    return Double(bytes) / (now() - start)
}

/// The ceiling: the same source read straight into one buffer on one thread.
func rngDirect(seconds: Double, buffer: Int, source: String) -> Double {
    let fd = open(source, O_RDONLY)
    defer { close(fd) }
    let p = UnsafeMutableRawPointer.allocate(byteCount: buffer, alignment: 4096)
    defer { p.deallocate() }
    var bytes = 0
    let start = now()
    while now() - start < seconds { bytes += max(0, read(fd, p, buffer)) }
    return Double(bytes) / (now() - start)
}

/// `value` with `digits` decimals (no Foundation).
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((value * scale).rounded())
    let whole = n / Int(scale), frac = abs(n % Int(scale))
    let f = String(frac)
    return digits == 0 ? String(whole) : "\(whole).\(String(repeating: "0", count: digits - f.count))\(f)"
}

extension Int {
    var nextPowerOfTwo: Int { self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount) }
}

let args = CommandLine.arguments
switch args.dropFirst().first {
case "rng":
    let a = Arguments(args.dropFirst(2))
    let seconds = a.double("seconds", 3), buffer = a.int("buffer", 4096), depth = a.int("depth", 16)
    let source = a.string("source", "/dev/urandom")
    let reference = rngDirect(seconds: seconds, buffer: buffer, source: source)
    let ours = try rngThroughDaemon(seconds: seconds, buffer: buffer, depth: depth, source: source)
    print("rng: buffer \(buffer) B, depth \(depth), source \(source), \(seconds) s each")
    print("  direct read(2) of the source: \(fixed(reference / 1e6, 1)) MB/s")
    print("  vhost-user-rng via fake VMM:  \(fixed(ours / 1e6, 1)) MB/s")
    print("  ratio vhost-user/direct: \(fixed(ours / reference, 2))")
case "i2c":
    try runI2CBench(Arguments(args.dropFirst(2)))
case "gpio":
    try runGPIOBenchmark(Arguments(args.dropFirst(2)))
case "console":
    try runConsoleBench(Arguments(args.dropFirst(2)))
case "blk-log":
    try runBlockDirtyLogBench(Arguments(args.dropFirst(2)))
case "vsock":
    try runVsockBench(Arguments(args.dropFirst(2)))
default:
    print("usage: vhost-user-bench rng [--seconds S] [--buffer BYTES] [--depth N] [--source PATH]")
    print("       vhost-user-bench i2c [--seconds S] [--length BYTES] [--depth N]")
    print("       vhost-user-bench gpio [--iterations N]")
    print("       vhost-user-bench console [--seconds S] [--buffer BYTES] [--depth N]")
    print("       vhost-user-bench blk-log [--seconds S] [--depth N] [--rounds N] [--file PATH] [--size-mib N]")
    print("       vhost-user-bench vsock [--seconds S] [--message BYTES] [--depth N] [--rounds N]")
    exit(2)
}
