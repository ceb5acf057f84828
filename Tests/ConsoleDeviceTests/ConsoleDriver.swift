import ConsoleDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The guest driver's side of a console, over a `GroupHarness`: control messages both ways, data on
/// each port's queues, with the buffers' addresses remembered by descriptor head.
final class ConsoleDriver {
    let device: ConsoleDevice
    let harness: GroupHarness
    private var buffers: [Int: [UInt16: UInt64]] = [:]

    init(_ device: ConsoleDevice, multiport: Bool = true, queueSize: Int = 64, memorySize: Int = 8 << 20) throws {
        self.device = device
        var features = device.deviceFeatures | VirtioFeature.kitFeatures
        if !multiport { features &= ~VirtioConsole.featureMultiport }
        harness = try GroupHarness(device: device, queueSize: queueSize, features: features,
                                   memory: FakeGuestMemory(size: memorySize))
    }

    var memory: FakeGuestMemory { harness.memory }

    /// Turns the group a few times without waiting: every member is processed each turn (the harness
    /// gives no kick descriptors), so this carries what is due through to the used rings. (The
    /// harness's own `run` turns until no ring has chains, which never happens here: receive and
    /// control receive buffers stay offered.)
    func run() {
        for _ in 0..<3 { harness.group.turn(timeoutMilliseconds: 0) }
    }
    func queue(_ index: Int) -> FakeQueue { harness.queue(index) }

    /// Offers a buffer the device writes (a receive or control receive buffer); returns its address.
    @discardableResult
    func offer(_ queueIndex: Int, size: Int, at address: UInt64? = nil) -> UInt64 {
        let address = address ?? memory.allocate(size)
        let head = queue(queueIndex).submit([.writable(address, size)])
        buffers[queueIndex, default: [:]][head] = address
        return address
    }

    /// Queues `bytes` for the device to read (transmit or control transmit).
    func post(_ queueIndex: Int, _ bytes: [UInt8], at address: UInt64? = nil) {
        let address = address ?? memory.allocate(max(1, bytes.count))
        memory.write(bytes, at: address)
        let head = queue(queueIndex).submit([.readable(address, bytes.count)])
        buffers[queueIndex, default: [:]][head] = address
    }

    /// What the device wrote into used buffers of `queueIndex`, one entry per used buffer.
    func used(_ queueIndex: Int) -> [[UInt8]] {
        queue(queueIndex).takeUsed().map { element in
            let address = buffers[queueIndex]?[UInt16(element.id)] ?? 0
            return element.length == 0 ? [] : memory.read(address, count: Int(element.length))
        }
    }

    // MARK: Control

    func sendControl(_ message: ConsoleControlMessage) {
        post(VirtioConsole.controlTransmitQueue, message.bytes)
        run()
    }

    func sendControl(_ id: UInt32, _ event: VirtioConsole.Event, _ value: UInt16 = 1) {
        sendControl(ConsoleControlMessage(id: id, event: event, value: value))
    }

    /// The control messages the device sent since the last call (offering buffers as needed).
    func receivedControl() -> [ConsoleControlMessage] {
        run()
        return used(VirtioConsole.controlReceiveQueue).compactMap { ConsoleControlMessage(bytes: $0) }
    }

    func offerControlBuffers(_ count: Int = 16) {
        for _ in 0..<count { offer(VirtioConsole.controlReceiveQueue, size: 256) }
        run()
    }

    /// DEVICE_READY, then PORT_READY and PORT_OPEN for every port, as Linux does; returns what the
    /// device sent meanwhile.
    @discardableResult
    func handshake(open: Bool = true) -> [ConsoleControlMessage] {
        offerControlBuffers(32)
        sendControl(0, .deviceReady)
        var messages = receivedControl()
        for id in 0..<device.portCount {
            sendControl(UInt32(id), .portReady)
            if open { sendControl(UInt32(id), .portOpen) }
        }
        messages += receivedControl()
        return messages
    }

    // MARK: Data

    /// Transmits `bytes` on port `port` in one buffer.
    func transmit(port: Int, _ bytes: [UInt8]) {
        post(VirtioConsole.transmitQueue(port: port), bytes)
        run()
    }

    /// Offers `count` receive buffers of `size` bytes on `port` and returns what the device put in
    /// them (after turning the group until `expected` bytes came, or `timeoutMilliseconds`).
    func receive(port: Int, expected: Int, bufferSize: Int = 4096, timeoutMilliseconds: Int = 5000) -> [UInt8] {
        let rx = VirtioConsole.receiveQueue(port: port)
        var got: [UInt8] = []
        var offered = 0
        let deadline = now() + timeoutMilliseconds
        while got.count < expected && now() < deadline {
            while offered < 8 {
                offer(rx, size: bufferSize)
                offered += 1
            }
            run()
            let chunks = used(rx)
            offered -= chunks.count
            got += chunks.joined()
            if chunks.isEmpty { harness.wait(milliseconds: 10) }
        }
        return got
    }

    /// Turns the group until `condition` holds or `timeoutMilliseconds` passed.
    @discardableResult
    func turn(until condition: () -> Bool, timeoutMilliseconds: Int = 5000) -> Bool {
        let deadline = now() + timeoutMilliseconds
        while !condition() {
            if now() > deadline { return false }
            run()
            if !condition() { harness.wait(milliseconds: 5) }
        }
        return true
    }
}

func now() -> Int {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1000 + t.tv_nsec / 1_000_000
}

/// A long deterministic stream, built once: the byte at stream offset `o` is `streamPattern[o % streamPeriod]`
/// (a period that no buffer size divides, so a shifted or repeated chunk never matches).
let streamPeriod = 1_000_003
let streamPattern: [UInt8] = (0..<(streamPeriod + (1 << 20))).map { i in
    let o = i % streamPeriod
    return UInt8(truncatingIfNeeded: o &* 131 &+ o >> 13 &+ 1)
}

/// `count` bytes (at most 1 MiB) of the stream from `offset` (`seed` picks another place in it).
func streamBytes(_ count: Int, from offset: Int, seed: Int = 0) -> [UInt8] {
    let start = (offset + seed * 7919) % streamPeriod
    return Array(streamPattern[start..<(start + count)])
}

/// Whether `bytes` are the stream's from `offset`.
func matchesStream(_ bytes: UnsafeRawBufferPointer, from offset: Int, seed: Int = 0) -> Bool {
    let start = (offset + seed * 7919) % streamPeriod
    return streamPattern.withUnsafeBytes { memcmp($0.baseAddress! + start, bytes.baseAddress!, bytes.count) == 0 }
}

/// A fresh path under /tmp for a socket or file.
func temporaryPath(_ name: String) -> String {
    "/tmp/console-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
}

/// Reads up to `limit` bytes from a non-socket descriptor that is non-blocking.
func readFile(_ fd: Int32, limit: Int = 1 << 20) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while out.count < limit {
        let n = read(fd, &chunk, min(chunk.count, limit - out.count))
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Connects to a unix socket, non-blocking.
func connectUnix(_ path: String) throws -> OwnedDescriptor {
    let fd = try UnixListener.connect(to: path)
    _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK)
    return fd
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        done += n
    }
    return true
}
