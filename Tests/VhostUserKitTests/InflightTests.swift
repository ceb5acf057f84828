import Synchronization
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A device that, while `holding`, takes chains and never completes them: the state a back-end is in
/// when it is killed with requests in flight. Otherwise it completes each chain, writing its head
/// index into the first writable byte so the test can tell which chain was served.
final class InflightProbeDevice: VhostUserDevice {
    let holding = Atomic<Bool>(true)
    /// Counts, and signals, every chain taken while holding.
    let held = Atomic<Int>(0)
    let tookChain = try! EventFD()
    var virtioDeviceID: UInt32 { 2 }
    var deviceFeatures: UInt64 { 0 }
    var queueCount: Int { 1 }
    var maxQueueSize: Int { 256 }
    var extraProtocolFeatures: ProtocolFeatures { [.inflightShmfd] }

    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler { Handler(device: self) }

    final class Handler: QueueHandler {
        let device: InflightProbeDevice
        init(device: InflightProbeDevice) { self.device = device }
        func process(_ queue: Virtqueue) -> ProcessResult {
            while let chain = queue.nextChain() {
                if device.holding.load(ordering: .relaxed) {
                    device.held.add(1, ordering: .relaxed)
                    device.tookChain.signal()
                    continue
                }
                var writer = chain.writer()
                writer.write(UInt8(truncatingIfNeeded: chain.head))
                queue.complete(chain, written: writer.written)
            }
            return .done
        }
    }
}

@Suite("inflight I/O tracking (INFLIGHT_SHMFD)")
struct InflightTests {
    /// Brings queue 0 up as QEMU's vhost-user-blk does on (re)connect: inflight region first, then
    /// features, memory and the ring, whose base is the used index (QEMU cannot ask a dead back-end).
    func start(_ daemon: InProcessDaemon, memory: FakeGuestMemory, queue: FakeQueue,
               inflight: (InflightDescription, OwnedDescriptor)?) throws -> (FakeFrontend, (InflightDescription, OwnedDescriptor)) {
        let f = try daemon.connect()
        try f.setOwner()
        let features = try f.getFeatures()
        try f.setProtocolFeatures(try f.getProtocolFeatures().intersection([.replyAck, .inflightShmfd, .configureMemSlots]))
        let region: (InflightDescription, OwnedDescriptor)
        if let inflight {
            region = inflight
        } else {
            let (d, fd) = try f.getInflightFd(queueCount: 1, queueSize: queue.size)
            region = (d, try #require(fd))
        }
        try f.setInflightFd(region.0, file: region.1.rawValue)
        try f.setFeatures(features)
        try f.setMemTable(memory)
        try f.setVringNum(0, queue.size)
        try f.setVringBase(0, queue.publishedUsedIndex)
        try f.setVringAddr(queue.address)
        try f.setVringKick(0, queue.kick)
        try f.setVringCall(0, queue.call)
        try f.setVringEnable(0, true)
        queue.eventIdx = features & VirtioFeature.ringEventIdx != 0
        return (f, region)
    }

    @Test("requests in flight when a back-end stops are resubmitted once each by the next one, in order")
    func inflightRequestsAreResubmitted() throws {
        let device = InflightProbeDevice()
        let daemon = try InProcessDaemon(device: device)
        defer { daemon.stop() }
        let memory = try FakeGuestMemory()
        let q = try FakeQueue(index: 0, size: 16, memory: memory)
        let buffers = (0..<6).map { _ in memory.allocate(16) }

        // First back-end: completes one request, then takes two and holds them, then completes a
        // later one: the used ring is out of order, with two holes in flight.
        var (frontend, region) = try start(daemon, memory: memory, queue: q, inflight: nil)
        device.holding.store(false, ordering: .relaxed)
        let first = q.submit([.writable(buffers[0], 16)])
        q.notifyDevice()
        #expect(try q.waitForUsed(1).map(\.id) == [UInt32(first)])
        device.holding.store(true, ordering: .relaxed)
        let held = [q.submit([.writable(buffers[1], 16)]), q.submit([.writable(buffers[2], 16)])]
        q.notifyDevice()
        while device.held.load(ordering: .relaxed) < 2 {
            #expect(device.tookChain.wait(timeoutMilliseconds: 5000), "the device did not take the chains")
        }
        device.holding.store(false, ordering: .relaxed)
        let later = q.submit([.writable(buffers[3], 16)])
        q.notifyDevice()
        #expect(try q.waitForUsed(1).map(\.id) == [UInt32(later)])
        #expect(Self.inflightHeads(region) == Set(held))

        // The back-end goes away. QEMU cannot ask it for the ring base, so it restarts the ring at
        // the used index (2): re-reading the available ring from there would serve `later` twice
        // and lose both held requests.
        _ = consume frontend
        (frontend, region) = try start(daemon, memory: memory, queue: q, inflight: region)
        let resubmitted = try q.waitForUsed(2)
        #expect(resubmitted.map(\.id) == held.map(UInt32.init), "the held requests, once each, oldest first")
        #expect(memory.read(buffers[1], count: 1) == [UInt8(held[0])])
        #expect(memory.read(buffers[2], count: 1) == [UInt8(held[1])])
        #expect(Self.inflightHeads(region).isEmpty)

        // The queue goes on after them: a new request is served once, and nothing else arrives.
        let next = q.submit([.writable(buffers[4], 16)])
        q.notifyDevice()
        #expect(try q.waitForUsed(1).map(\.id) == [UInt32(next)])
        #expect(q.takeUsed().isEmpty)
        #expect(q.publishedUsedIndex == 5)
    }

    /// Heads marked in flight in queue 0's part of the region.
    static func inflightHeads(_ region: (InflightDescription, OwnedDescriptor)) -> Set<UInt16> {
        let mapped = try! InflightRegion(region.0, file: OwnedDescriptor(dup(region.1.rawValue)))
        let count = Int(mapped.base.load(fromByteOffset: 10, as: UInt16.self))
        return Set((0..<count).compactMap { i in
            mapped.base.load(fromByteOffset: 16 + 16 * i, as: UInt8.self) == 1 ? UInt16(i) : nil
        })
    }
}
