// vhost-user-input-bench (a benchmark, not a test): input events per second end to end, from lines on
// the control socket to completions on the eventq that the fake front-end sees, against a reference
// measured in the same run: the same lines through a plain unix socket pair to a thread that only
// answers "ok" to each (the transport and the line handling every control client pays anyway).
//
//   vhost-user-input-bench [--seconds S] [--chunk LINES]
//
// The lines are "rel 1 0" and "sync" in turn on a synthetic mouse: one event each (REL_X, then
// SYN_REPORT), so events per second and lines per second are the same number on both sides.
import BenchmarkSupport
import InputDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

let options = BenchmarkArguments(CommandLine.arguments.dropFirst())

/// Sends `chunkLines` lines of the workload at a time and reads their replies, until `stop`; returns
/// the lines answered.
func drive(_ fd: Int32, chunkLines: Int, stop: Locked<Bool>) -> Int {
    let chunk = Array(String(repeating: "rel 1 0\nsync\n", count: chunkLines / 2).utf8)
    var buffer = [UInt8](repeating: 0, count: 65536)
    var answered = 0
    while !stop.withLock({ $0 }) {
        var sent = 0
        while sent < chunk.count {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress! + sent, chunk.count - sent) }
            guard n > 0 else { return answered }
            sent += n
        }
        var replies = 0
        while replies < chunkLines {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { return answered }
            for byte in buffer[..<n] where byte == UInt8(ascii: "\n") { replies += 1 }
        }
        answered += replies
    }
    return answered
}

/// The daemon's path: control socket → ControlServer on the group's worker → pending batches →
/// eventq buffers → used ring → call eventfd → the fake front-end, which offers the buffers again.
func throughDevice(seconds: Double, chunkLines: Int) throws -> (eventsPerSecond: Double, lines: Int) {
    let path = "/tmp/vhost-user-input-bench-\(getpid()).sock"
    defer { unlink(path) }
    let description = SyntheticKind.mouse.description()
    let device = InputDevice(description: description, source: .control(ControlServer(listener: try UnixListener(path: path), description: description)),
                             bufferEvents: 8192)
    let fixture = try DeviceFixture(device, queueSizes: [256, 64])
    defer { fixture.daemon.stop() }
    let eventq = fixture.queues[0]
    // Each buffer's address by its head (single-descriptor chains: heads stay below the ring size).
    var buffers = [UInt64](repeating: 0, count: 256)
    for _ in 0..<256 {
        let address = fixture.memory.allocate(8)
        buffers[Int(eventq.submit([.writable(address, 8)]))] = address
    }
    eventq.notifyDevice()

    let client = try UnixListener.connect(to: path)
    let stop = Locked(false)
    let answered = Locked(0)
    let start = now()
    let thread = PosixThread(name: "bench-client") { [fd = client.rawValue] in
        let n = drive(fd, chunkLines: chunkLines, stop: stop)
        answered.withLock { $0 = n }
    }
    var events = 0
    while now() - start < seconds {
        for element in try eventq.waitForUsed(1) {
            events += 1
            let address = buffers[Int(element.id)]
            buffers[Int(eventq.submit([.writable(address, 8)]))] = address
        }
        eventq.notifyDevice()
    }
    let elapsed = now() - start
    stop.withLock { $0 = true }
    // The client's last chunk is answered whether or not its events fit ("error busy" otherwise).
    thread.join()
    return (Double(events) / elapsed, answered.withLock { $0 })
}

/// The reference: the same lines through a socket pair to a thread that answers each with "ok".
func throughSocketPair(seconds: Double, chunkLines: Int) -> Double {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    let server = PosixThread(name: "bench-echo") { [fd = fds[1]] in
        var buffer = [UInt8](repeating: 0, count: 65536)
        var replies = [UInt8]()
        while true {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { return }
            replies.removeAll(keepingCapacity: true)
            for byte in buffer[..<n] where byte == UInt8(ascii: "\n") { replies += [UInt8(ascii: "o"), UInt8(ascii: "k"), UInt8(ascii: "\n")] }
            _ = write(fd, replies, replies.count)
        }
    }
    let stop = Locked(false)
    let start = now()
    let answered = Locked(0)
    let client = PosixThread(name: "bench-client") { [fd = fds[0]] in
        let n = drive(fd, chunkLines: chunkLines, stop: stop)
        answered.withLock { $0 = n }
    }
    while now() - start < seconds { _ = poll(nil, 0, 50) }
    stop.withLock { $0 = true }
    client.join()
    let elapsed = now() - start
    shutdown(fds[0], Int32(SHUT_RDWR))
    server.join()
    close(fds[0])
    close(fds[1])
    return Double(answered.withLock { $0 }) / elapsed
}

let seconds = options.double("seconds", 3)
let chunkLines = options.int("chunk", 64) & ~1
let device = try throughDevice(seconds: seconds, chunkLines: chunkLines)
let reference = throughSocketPair(seconds: seconds, chunkLines: chunkLines)
print("input events end to end (control socket → eventq completion): \(Int(device.eventsPerSecond)) events/s")
print("reference (the same lines through a socket pair, answered ok):  \(Int(reference)) lines/s")
print("ratio device/reference: \((device.eventsPerSecond / reference * 100).rounded() / 100)")
