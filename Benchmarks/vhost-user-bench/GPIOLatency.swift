import BenchmarkSupport
import GPIODevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// GPIO interrupt latency through the whole path: a host script's `set LINE 1` on the simulated chip's
/// control socket → the daemon's worker wakes (epoll) → the line's rising edge → its held eventq buffer
/// used (VALID) → used ring published → call eventfd → the fake driver sees the completion. Each
/// sample re-arms: the driver queues the buffer again and the line goes back low (no interrupt).
final class GPIOInterruptProbe {
    private let controlPath = "/tmp/vhu-gpio-bench-\(getpid()).sock"
    private let fixture: DeviceFixture<GPIODevice>
    private let control: OwnedDescriptor
    private let line: UInt64, status: UInt64

    init() throws {
        fixture = try DeviceFixture(GPIODevice(chip: try SimulatedChip(layout: try SimulatedChipLayout(lineCount: 8),
                                                                       controlSocketPath: controlPath)),
                                    queueSizes: [16, 16])
        let memory = fixture.memory, requestq = fixture.queues[0]
        for request: [UInt8] in [[3, 0, 5, 0, 2, 0, 0, 0], [6, 0, 5, 0, 1, 0, 0, 0]] {  // line 5: input, rising edge
            let header = memory.allocate(8), response = memory.allocate(2)
            memory.write(request, at: header)
            requestq.submit([.readable(header, 8), .writable(response, 2)])
            requestq.notifyDevice()
            _ = try requestq.waitForUsed(1)
            guard memory.read(response, count: 1) == [0] else { throw BenchError("request \(request) refused") }
        }
        line = memory.allocate(2)
        status = memory.allocate(1)
        memory.write([5, 0], at: line)
        control = try UnixListener.connect(to: controlPath)
    }

    deinit {
        fixture.daemon.stop()
        unlink(controlPath)
    }

    /// One interrupt's latency in nanoseconds.
    func sample() throws -> UInt64 {
        let eventq = fixture.queues[1]
        eventq.submit([.readable(line, 2), .writable(status, 1)])
        eventq.notifyDevice()
        // The buffer is held once a command sent after the kick is answered twice over (the worker
        // takes a kick in the turn after the one that saw it, before it waits again).
        try roundTrip("get 5", control)
        try roundTrip("get 5", control)
        let start = monotonicNanoseconds()
        try sendLine("set 5 1", control)
        _ = try eventq.waitForUsed(1)
        let latency = monotonicNanoseconds() - start
        guard fixture.memory.read(status, count: 1) == [1] else { throw BenchError("the interrupt came back INVALID") }
        try readLine(control)
        try roundTrip("set 5 0", control)
        return latency
    }
}

/// The reference, measured in the same run: the same hop without the device, a line written to a
/// unix socket that a thread sleeps on in poll(2) (as the worker sleeps in epoll), which reads it and
/// signals an eventfd the caller waits on (as it waits on the call eventfd).
final class SocketEventfdProbe {
    private let ours: OwnedDescriptor
    private let done: EventFD
    private let echo: PosixThread

    init() throws {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { throw BenchError("socketpair: errno \(errno)") }
        let theirs = OwnedDescriptor(pair[1])
        ours = OwnedDescriptor(pair[0])
        let done = try EventFD()
        self.done = done
        echo = PosixThread(name: "bench-echo") {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                var pfd = pollfd(fd: theirs.rawValue, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, -1) == 1 else { continue }
                if read(theirs.rawValue, &buffer, buffer.count) <= 0 { break }
                _ = done.signal()
            }
        }
    }

    deinit {
        shutdown(ours.rawValue, Int32(SHUT_RDWR))
        echo.join()
    }

    func sample() throws -> UInt64 {
        let start = monotonicNanoseconds()
        try sendLine("set 5 1", ours)
        var pfd = pollfd(fd: done.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 5000) == 1 else { throw BenchError("the reference thread did not answer") }
        let latency = monotonicNanoseconds() - start
        _ = done.drain()
        return latency
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func sendLine(_ line: String, _ socket: OwnedDescriptor) throws {
    let bytes = Array((line + "\n").utf8)
    guard send(socket.rawValue, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw BenchError("send: errno \(errno)") }
}

/// Reads one reply line (bounded by a 5 s poll).
private func readLine(_ socket: OwnedDescriptor) throws {
    var byte: UInt8 = 0
    repeat {
        var pfd = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 5000) == 1, read(socket.rawValue, &byte, 1) == 1 else { throw BenchError("no reply from the control socket") }
    } while byte != UInt8(ascii: "\n")
}

private func roundTrip(_ line: String, _ socket: OwnedDescriptor) throws {
    try sendLine(line, socket)
    try readLine(socket)
}

/// The `fraction` percentile of `samples` (nanoseconds) in microseconds.
func percentileMicroseconds(_ samples: [UInt64], _ fraction: Double) -> Double {
    let sorted = samples.sorted()
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) / 1000
}

/// Samples both, interleaved, so the machine's noise falls on both alike.
func runGPIOBenchmark(_ a: Arguments) throws {
    let iterations = a.int("iterations", 2000)
    let gpio = try GPIOInterruptProbe(), reference = try SocketEventfdProbe()
    var ours: [UInt64] = [], theirs: [UInt64] = []
    for _ in 0..<iterations {
        theirs.append(try reference.sample())
        ours.append(try gpio.sample())
    }
    let (r50, r99) = (percentileMicroseconds(theirs, 0.5), percentileMicroseconds(theirs, 0.99))
    let (g50, g99) = (percentileMicroseconds(ours, 0.5), percentileMicroseconds(ours, 0.99))
    print("gpio: interrupt latency, \(iterations) samples each, interleaved (host edge on the control socket -> eventq completion seen by the driver)")
    print("  reference (socket line -> thread in poll -> eventfd): p50 \(fixed(r50, 1)) us, p99 \(fixed(r99, 1)) us")
    print("  vhost-user-gpio via fake VMM:                         p50 \(fixed(g50, 1)) us, p99 \(fixed(g99, 1)) us")
    print("  ratio vhost-user/reference: p50 \(fixed(g50 / r50, 2)), p99 \(fixed(g99 / r99, 2))")
}
