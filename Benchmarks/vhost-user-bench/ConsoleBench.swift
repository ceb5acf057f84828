// vhost-user-bench console: bytes per second each way through a console port (fake driver → daemon
// worker → unix socket client, and back) against a unix socket pair moving the same chunks in the
// same run.
import BenchmarkSupport
import ConsoleDevice
import Synchronization
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

func runConsoleBench(_ a: Arguments) throws {
    let seconds = a.double("seconds", 3), buffer = a.int("buffer", 4096), depth = a.int("depth", 64)
    let pair = try socketPairRate(seconds: seconds, chunk: buffer)
    let guestToHost = try consoleRate(seconds: seconds, buffer: buffer, depth: depth, towardGuest: false)
    let hostToGuest = try consoleRate(seconds: seconds, buffer: buffer, depth: depth, towardGuest: true)
    print("console: port 0 on a unix socket backend, guest buffers \(buffer) B, depth \(depth), \(seconds) s each")
    print("  unix socket pair, \(buffer) B writes (reference): \(fixed(pair / 1e6, 1)) MB/s")
    print("  guest -> host through the daemon:           \(fixed(guestToHost / 1e6, 1)) MB/s")
    print("  host -> guest through the daemon:           \(fixed(hostToGuest / 1e6, 1)) MB/s")
    print("  ratio guest->host / socket pair: \(fixed(guestToHost / pair, 2))")
    print("  ratio host->guest / socket pair: \(fixed(hostToGuest / pair, 2))")
}

/// A thread moving bytes through a blocking socket (reading and counting, or writing) until `stop`.
final class SocketPump: Sendable {
    let bytes = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let fd: Int32
    private let thread = Locked<PosixThread?>(nil)

    init(fd: Int32, chunk: Int, writing: Bool) {
        self.fd = fd
        let started = PosixThread(name: "bench-pump") { [self] in
            var data = [UInt8](repeating: 0x5a, count: chunk)
            while !stopping.load(ordering: .relaxed) {
                let n = writing ? send(fd, data, chunk, Int32(MSG_NOSIGNAL)) : recv(fd, &data, chunk, 0)
                if n <= 0 { break }
                bytes.add(n, ordering: .relaxed)
            }
        }
        thread.withLock { $0 = started }
    }

    /// Stops the thread (shutting the socket down wakes a blocked call) and waits for it.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        thread.withLock { $0 }?.join()
    }
}

/// The reference: a writer and a reader thread on a unix socket pair.
func socketPairRate(seconds: Double, chunk: Int) throws -> Double {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw SystemError("socketpair", errno: errno) }
    defer { close(fds[0]); close(fds[1]) }
    let reader = SocketPump(fd: fds[1], chunk: chunk, writing: false)
    let writer = SocketPump(fd: fds[0], chunk: chunk, writing: true)
    let start = now(), startBytes = reader.bytes.load(ordering: .relaxed)
    while now() - start < seconds { usleep(10_000) }  // the measurement window
    let rate = Double(reader.bytes.load(ordering: .relaxed) - startBytes) / (now() - start)
    writer.stop()
    reader.stop()
    return rate
}

/// One direction through the console daemon: port 0 (single-port, no control handshake) on a unix
/// backend with a client thread on the other end.
func consoleRate(seconds: Double, buffer: Int, depth: Int, towardGuest: Bool) throws -> Double {
    let path = "/tmp/vhost-user-bench-console-\(getpid()).sock"
    defer { unlink(path) }
    var options = ConsoleDevice.Options()
    options.bufferBytes = 256 << 10
    options.inputBytes = 256 << 10
    let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.unix(path: path)))], options: options)
    let size = max(16, depth.nextPowerOfTwo)
    let fixture = try DeviceFixture(device, queueSizes: [size, size], memorySize: max(4 << 20, buffer * depth * 2 + (2 << 20)),
                                    maskFeatures: VirtioConsole.featureMultiport)
    defer { fixture.daemon.stop() }
    let client = try UnixListener.connect(to: path)
    let memory = fixture.memory
    // Attached once a byte the guest sent arrives (the console keeps it until a client attaches).
    let tx = fixture.queues[1], rx = fixture.queues[0]
    let probe = memory.allocate(1)
    tx.submit([.readable(probe, 1)])
    tx.notifyDevice()
    _ = try tx.waitForUsed(1)
    var byte: UInt8 = 0
    guard recv(client.rawValue, &byte, 1, 0) == 1 else { throw SystemError("recv", errno: errno) }

    let q = towardGuest ? rx : tx
    let pump = SocketPump(fd: client.rawValue, chunk: buffer, writing: towardGuest)
    defer { pump.stop() }
    let buffers = (0..<depth).map { _ in memory.allocate(buffer, alignment: 4096) }
    for b in buffers { q.submit([towardGuest ? .writable(b, buffer) : .readable(b, buffer)]) }
    q.notifyDevice()
    var moved = 0, next = 0
    let start = now(), pumped = pump.bytes.load(ordering: .relaxed)
    while now() - start < seconds {
        for element in try q.waitForUsed(1) {
            moved += Int(element.length)
            let b = buffers[next % depth]
            q.submit([towardGuest ? .writable(b, buffer) : .readable(b, buffer)])
            next += 1
        }
        q.notifyDevice()
    }
    let elapsed = now() - start
    return Double(towardGuest ? moved : pump.bytes.load(ordering: .relaxed) - pumped) / elapsed
}
