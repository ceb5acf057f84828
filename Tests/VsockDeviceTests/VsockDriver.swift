import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// A packet the device wrote into a receive buffer.
struct Packet: Equatable {
    var header: VsockHeader
    var payload: [UInt8]
    var op: VirtioVsock.Op? { header.operation }
}

/// The guest driver's side of a vsock device, over a `GroupHarness`: packets to the tx queue, receive
/// buffers offered and recycled, event buffers; addresses remembered by descriptor head.
final class VsockDriver {
    let device: VsockDevice
    let harness: GroupHarness
    let cid: UInt64
    /// The window this guest gives every connection (buf_alloc in its packets) and what it consumed.
    var bufAlloc: UInt32 = 256 << 10
    var fwdCnt: [UInt32: UInt32] = [:]
    private var rxAddress: [UInt16: UInt64] = [:]
    private var txAddress: [UInt16: (address: UInt64, capacity: Int)] = [:]
    private var freeTx: [(address: UInt64, capacity: Int)] = []
    private var eventAddress: [UInt16: UInt64] = [:]
    let rxBufferSize: Int
    private(set) var rxOffered = 0

    init(_ device: VsockDevice, queueSize: Int = 256, memorySize: Int = 64 << 20, rxBufferSize: Int = 4096 + 44,
         rxBuffers: Int? = nil, events: Int = 4, features: UInt64? = nil) throws {
        self.device = device
        cid = device.guestCID
        self.rxBufferSize = rxBufferSize
        harness = try GroupHarness(device: device, queueSize: queueSize, features: features,
                                   memory: FakeGuestMemory(size: memorySize))
        for _ in 0..<(rxBuffers ?? queueSize / 2) { offerReceive() }
        for _ in 0..<events {
            let address = memory.allocate(8)
            eventAddress[queue(VirtioVsock.eventQueue).submit([.writable(address, 8)])] = address
        }
        run()
    }

    var memory: FakeGuestMemory { harness.memory }
    func queue(_ index: Int) -> FakeQueue { harness.queue(index) }

    /// Turns the group a few times without waiting.
    func run() {
        for _ in 0..<4 { harness.group.turn(timeoutMilliseconds: 0) }
    }

    /// Turns the group (waiting up to 5 ms each time) until `condition` holds or `milliseconds` passed.
    @discardableResult
    func turn(for milliseconds: Int = 5000, until condition: () -> Bool) -> Bool {
        let deadline = now() + milliseconds
        while !condition() {
            if now() > deadline { return false }
            run()
            if !condition() { harness.wait(milliseconds: 5) }
        }
        return true
    }

    func offerReceive(size: Int? = nil) {
        let address = memory.allocate(size ?? rxBufferSize)
        rxAddress[queue(VirtioVsock.receiveQueue).submit([.writable(address, size ?? rxBufferSize)])] = address
        rxOffered += 1
    }

    /// Sends a packet from the guest (its CID, its credit) with `payload`.
    func send(_ op: VirtioVsock.Op, port: UInt32, to peerPort: UInt32, cid peerCID: UInt64 = VirtioVsock.hostCID,
              type: VirtioVsock.SocketType = .stream, flags: UInt32 = 0, payload: [UInt8] = [], from srcCID: UInt64? = nil) {
        var header = VsockHeader(srcCID: srcCID ?? cid, dstCID: peerCID, srcPort: port, dstPort: peerPort, type: type, op: op,
                                 flags: flags, length: UInt32(payload.count), bufAlloc: bufAlloc, fwdCnt: fwdCnt[port] ?? 0)
        header.length = UInt32(payload.count)
        sendRaw(header.bytes + payload)
    }

    /// Sends any bytes as a tx packet (one readable buffer).
    func sendRaw(_ bytes: [UInt8]) {
        recycleTransmit()
        let buffer: (address: UInt64, capacity: Int)
        if let i = freeTx.lastIndex(where: { $0.capacity >= bytes.count }) {
            buffer = freeTx.remove(at: i)
        } else {
            let capacity = max(bytes.count, 4096 + 64)
            buffer = (memory.allocate(capacity), capacity)
        }
        memory.write(bytes, at: buffer.address)
        txAddress[queue(VirtioVsock.transmitQueue).submit([.readable(buffer.address, max(1, bytes.count))])] = buffer
    }

    /// Takes the tx queue's used buffers back; returns how many.
    @discardableResult
    func recycleTransmit() -> Int {
        let used = queue(VirtioVsock.transmitQueue).takeUsed()
        for element in used {
            if let buffer = txAddress.removeValue(forKey: UInt16(element.id)) { freeTx.append(buffer) }
        }
        return used.count
    }

    /// The packets the device wrote since the last call; each used buffer is offered again, and the
    /// payload bytes count as consumed by the guest (its fwd_cnt) unless `consume` is false.
    func received(consume: Bool = true, reoffer: Bool = true) -> [Packet] {
        run()
        var packets: [Packet] = []
        for element in queue(VirtioVsock.receiveQueue).takeUsed() {
            guard let address = rxAddress.removeValue(forKey: UInt16(element.id)) else { continue }
            let bytes = memory.read(address, count: Int(element.length))
            rxOffered -= 1
            if reoffer {
                rxAddress[queue(VirtioVsock.receiveQueue).submit([.writable(address, rxBufferSize)])] = address
                rxOffered += 1
            }
            guard let header = VsockHeader(bytes: bytes) else {
                Issue.record("a receive buffer of \(bytes.count) bytes")
                continue
            }
            let payload = Array(bytes[VirtioVsock.headerSize...])
            if consume && header.operation == .rw { fwdCnt[header.dstPort, default: 0] &+= UInt32(payload.count) }
            packets.append(Packet(header: header, payload: payload))
        }
        return packets
    }

    /// Turns until a packet with `op` for guest port `port` arrives (collecting everything in `log`).
    func expect(_ op: VirtioVsock.Op, port: UInt32? = nil, log: inout [Packet], milliseconds: Int = 3000) -> Packet? {
        var found: Packet?
        turn(for: milliseconds) {
            log += received()
            found = log.first { $0.op == op && (port == nil || $0.header.dstPort == port) }
            return found != nil
        }
        if let found, let i = log.firstIndex(of: found) { log.remove(at: i) }
        return found
    }

    func expect(_ op: VirtioVsock.Op, port: UInt32? = nil) -> Packet? {
        var log: [Packet] = []
        return expect(op, port: port, log: &log)
    }

    /// The event ids the device wrote since the last call.
    func events() -> [UInt32] {
        run()
        return queue(VirtioVsock.eventQueue).takeUsed().compactMap { element in
            guard let address = eventAddress[UInt16(element.id)], element.length == 4 else { return nil }
            return memory.read(address, count: 4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        }
    }
}

/// A host listener at `PATH_port` (stream or seqpacket), non-blocking, with a large backlog.
func listenHost(_ path: String, port: UInt32, type: Int32 = Int32(SOCK_STREAM.rawValue), backlog: Int32 = 8) throws -> OwnedDescriptor {
    let listener = try UnixListener(path: "\(path)_\(port)", type: type, backlog: backlog).socket
    _ = fcntl(listener.rawValue, F_SETFL, fcntl(listener.rawValue, F_GETFL) | O_NONBLOCK)
    return listener
}

func acceptHost(_ listener: OwnedDescriptor) -> OwnedDescriptor? {
    let fd = accept(listener.rawValue, nil, nil)
    guard fd >= 0 else { return nil }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return OwnedDescriptor(fd)
}

func connectHost(_ path: String, type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> OwnedDescriptor {
    let fd = try UnixListener.connect(to: path, type: type)
    _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK)
    return fd
}

func now() -> Int {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1000 + t.tv_nsec / 1_000_000
}

/// A fresh socket path prefix under /tmp (short: PATH_PORT must fit sun_path).
func temporaryPath() -> String { "/tmp/vsk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

/// Removes PATH, PATH.seqpacket and PATH_port files.
func removeSockets(_ path: String, ports: [UInt32] = []) {
    unlink(path)
    unlink(HostSockets.seqpacketPath(path))
    for port in ports { unlink("\(path)_\(port)") }
}

/// recv's raw result on a non-blocking socket: >0 bytes, 0 end of file, -errno.
func peekState(_ fd: Int32) -> Int {
    var byte: UInt8 = 0
    let n = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
    return n < 0 ? -Int(errno) : n
}

func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EAGAIN { var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0); _ = poll(&p, 1, 100); continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

func pattern(_ count: Int, seed: Int = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8 &+ seed) } }

/// A device with its host sockets under a fresh path, and a driver for it.
struct Bench {
    let path: String
    let device: VsockDevice
    let driver: VsockDriver
    init(cid: UInt64 = 3, options: VsockDevice.Options = .init(), hub: VsockHub? = nil, rxBufferSize: Int = 4096 + 44,
         queueSize: Int = 256, rxBuffers: Int? = nil, features: UInt64? = nil) throws {
        path = temporaryPath()
        device = try VsockDevice(guestCID: cid, host: HostSockets(path: path), hub: hub, options: options)
        driver = try VsockDriver(device, queueSize: queueSize, rxBufferSize: rxBufferSize, rxBuffers: rxBuffers, features: features)
    }
    func cleanUp(ports: [UInt32] = []) {
        driver.harness.finish()
        removeSockets(path, ports: ports)
    }
}
