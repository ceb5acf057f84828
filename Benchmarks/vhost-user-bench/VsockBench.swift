// vhost-user-bench vsock: a stream connection's bytes per second each way through the vsock daemon
// (fake driver → daemon worker → host unix socket, and back) and connections per second (REQUEST →
// RESPONSE with the host accepting, then RST), against a unix socket pair moving the same chunks and
// unix connect/accept/close in the same run.
import BenchmarkSupport
import Synchronization
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

func runVsockBench(_ a: Arguments) throws {
    let seconds = a.double("seconds", 1), message = a.int("message", 64 << 10), depth = a.int("depth", 32)
    let rounds = max(1, a.int("rounds", 5))
    let bench = try VsockBenchDevice(message: message, depth: depth)
    defer { bench.stop() }
    // Rounds alternate the reference and the daemon, so a busy moment of a shared machine lands on
    // both; each figure is the median of its rounds.
    var pair: [Double] = [], guestToHost: [Double] = [], hostToGuest: [Double] = [], unix: [Double] = [], vsock: [Double] = []
    for _ in 0..<rounds {
        pair.append(try socketPairRate(seconds: seconds, chunk: message))
        guestToHost.append(try bench.rate(seconds: seconds, towardGuest: false))
        hostToGuest.append(try bench.rate(seconds: seconds, towardGuest: true))
        unix.append(try unixConnectRate(seconds: seconds))
        vsock.append(try bench.connectRate(seconds: seconds))
    }
    let (p, g, h, u, v) = (median(pair), median(guestToHost), median(hostToGuest), median(unix), median(vsock))
    print("vsock: one stream connection, \(message) B messages, ring depth \(depth); medians of \(rounds) rounds of \(seconds) s each")
    print("  unix socket pair, \(message) B writes (reference): \(fixed(p / 1e6, 1)) MB/s")
    print("  guest -> host through the daemon:             \(fixed(g / 1e6, 1)) MB/s")
    print("  host -> guest through the daemon:             \(fixed(h / 1e6, 1)) MB/s")
    print("  ratio guest->host / socket pair: \(fixed(g / p, 2))")
    print("  ratio host->guest / socket pair: \(fixed(h / p, 2))")
    print("  unix connect+accept+close (reference): \(fixed(u, 0)) connections/s")
    print("  vsock REQUEST+RESPONSE+RST via the daemon: \(fixed(v, 0)) connections/s")
    print("  ratio connections vsock / unix: \(fixed(v / u, 2))")
}

/// The middle value (the mean of the two middle ones for an even count).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// The reference for connections: connect, accept and close a unix stream socket, one after another.
func unixConnectRate(seconds: Double) throws -> Double {
    let path = "/tmp/vhost-user-bench-unix-\(getpid()).sock"
    defer { unlink(path) }
    let listener = try UnixListener(path: path, backlog: 64)
    var count = 0
    let start = now()
    while now() - start < seconds {
        let client = try UnixListener.connect(to: path)
        _ = try listener.accept()
        _ = client
        count += 1
    }
    return Double(count) / (now() - start)
}

/// The vsock daemon in-process with a fake driver: rx buffers of header + message, tx packets, the
/// guest's credit kept as Linux keeps it.
final class VsockBenchDevice {
    let fixture: DeviceFixture<VsockDevice>
    let path = "/tmp/vhost-user-bench-vsock-\(getpid())"
    let message: Int, depth: Int
    let rxBuffers: [UInt64], txBuffers: [UInt64]
    var rxHead: [UInt16: UInt64] = [:]
    /// The guest's receive window and what it consumed; the device's window and what it forwarded.
    let guestBufAlloc: UInt32 = 4 << 20
    var guestFwdCnt: UInt32 = 0, lastAnnounced: UInt32 = 0
    var deviceBufAlloc: UInt32 = 0, deviceFwdCnt: UInt32 = 0, txCnt: UInt32 = 0
    var rx: FakeQueue { fixture.queues[VirtioVsock.receiveQueue] }
    var tx: FakeQueue { fixture.queues[VirtioVsock.transmitQueue] }
    var freeTx: [UInt64]
    var txHeads: [UInt16: UInt64] = [:]

    init(message: Int, depth: Int) throws {
        self.message = message
        self.depth = depth
        var options = VsockDevice.Options()
        options.bufferBytes = max(options.bufferBytes, UInt32(message * 4))
        let device = try VsockDevice(guestCID: 3, host: HostSockets(path: path), options: options)
        let size = max(16, (depth * 2).nextPowerOfTwo)
        let packet = message + VirtioVsock.headerSize
        let fixture = try DeviceFixture(device, queueSizes: [size, size, 16], memorySize: ((packet * depth * 2 + 4095) & ~4095) + (4 << 20))
        self.fixture = fixture
        let memory = fixture.memory
        rxBuffers = (0..<depth).map { _ in memory.allocate(packet, alignment: 4096) }
        txBuffers = (0..<depth).map { _ in memory.allocate(packet, alignment: 4096) }
        freeTx = txBuffers
        for b in rxBuffers { rxHead[rx.submit([.writable(b, packet)])] = b }
        rx.notifyDevice()
    }

    func stop() {
        fixture.daemon.stop()
        unlink(path)
        unlink(HostSockets.seqpacketPath(path))
    }

    /// Sends one packet from guest port `port` to host port `peer` (waiting for a free tx buffer).
    func send(_ op: VirtioVsock.Op, port: UInt32, peer: UInt32, payload: Int = 0) throws {
        while freeTx.isEmpty { try reapTransmit(wait: true) }
        let address = freeTx.removeLast()
        let header = VsockHeader(srcCID: 3, dstCID: 2, srcPort: port, dstPort: peer, type: .stream, op: op,
                                 length: UInt32(payload), bufAlloc: guestBufAlloc, fwdCnt: guestFwdCnt)
        fixture.memory.write(header.bytes, at: address)
        txHeads[tx.submit([.readable(address, VirtioVsock.headerSize + payload)])] = address
        tx.notifyDevice()
        if op == .rw { txCnt &+= UInt32(payload) }
        lastAnnounced = guestFwdCnt
    }

    func reapTransmit(wait: Bool) throws {
        let used = wait ? try tx.waitForUsed(1) : tx.takeUsed()
        for element in used { if let a = txHeads.removeValue(forKey: UInt16(element.id)) { freeTx.append(a) } }
    }

    /// Takes the packets the device wrote, re-offers their buffers; returns (op, payload bytes) of each.
    func receive(wait: Bool) throws -> [(VirtioVsock.Op?, Int)] {
        let used = wait ? try rx.waitForUsed(1) : rx.takeUsed()
        var packets: [(VirtioVsock.Op?, Int)] = []
        for element in used {
            guard let address = rxHead.removeValue(forKey: UInt16(element.id)) else { continue }
            let header = VsockHeader(bytes: fixture.memory.read(address, count: VirtioVsock.headerSize))!
            deviceBufAlloc = header.bufAlloc
            deviceFwdCnt = header.fwdCnt
            if header.operation == .rw { guestFwdCnt &+= header.length }
            packets.append((header.operation, Int(header.length)))
            rxHead[rx.submit([.writable(address, message + VirtioVsock.headerSize)])] = address
        }
        rx.notifyDevice()
        return packets
    }

    /// Connects guest port `port` to host port 9000; returns the host end.
    func connect(port: UInt32, listener: UnixListener) throws -> OwnedDescriptor {
        try send(.request, port: port, peer: 9000)
        while !(try receive(wait: true)).contains(where: { $0.0 == .response }) {}
        return try listener.accept()
    }

    func rate(seconds: Double, towardGuest: Bool) throws -> Double {
        let listener = try UnixListener(path: "\(path)_9000")
        defer { unlink("\(path)_9000") }
        let port: UInt32 = towardGuest ? 2000 : 1000
        txCnt = 0; guestFwdCnt = 0; deviceFwdCnt = 0
        let host = try connect(port: port, listener: listener)
        let pump = SocketPump(fd: host.rawValue, chunk: message, writing: towardGuest)
        defer {
            pump.stop()
            try? send(.rst, port: port, peer: 9000)
        }
        var moved = 0
        let start = now(), pumped = pump.bytes.load(ordering: .relaxed)
        while now() - start < seconds {
            if towardGuest {
                for (op, length) in try receive(wait: true) where op == .rw { moved += length }
                // Announce consumed credit as Linux does, once a good part of the window is free again.
                if guestFwdCnt &- lastAnnounced >= guestBufAlloc / 4 { try send(.creditUpdate, port: port, peer: 9000) }
                try reapTransmit(wait: false)
            } else {
                // Send while the device's window and the ring allow, then take credit updates.
                while !freeTx.isEmpty, deviceBufAlloc &- (txCnt &- deviceFwdCnt) >= UInt32(message) {
                    try send(.rw, port: port, peer: 9000, payload: message)
                }
                try reapTransmit(wait: false)
                _ = try receive(wait: freeTx.isEmpty || deviceBufAlloc &- (txCnt &- deviceFwdCnt) < UInt32(message))
            }
        }
        let elapsed = now() - start
        return Double(towardGuest ? moved : pump.bytes.load(ordering: .relaxed) - pumped) / elapsed
    }

    /// REQUEST → RESPONSE (the host accepts) → RST, one connection after another.
    func connectRate(seconds: Double) throws -> Double {
        let listener = try UnixListener(path: "\(path)_9000", backlog: 64)
        defer { unlink("\(path)_9000") }
        var count = 0
        let start = now()
        while now() - start < seconds {
            let port = UInt32(10_000 + count % 50_000)
            _ = try connect(port: port, listener: listener)
            try send(.rst, port: port, peer: 9000)
            count += 1
        }
        return Double(count) / (now() - start)
    }
}
