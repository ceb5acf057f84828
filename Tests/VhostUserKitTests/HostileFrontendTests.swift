import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A front-end that hands over descriptors and memory meant to hurt the daemon: call descriptors that
/// block or fail, memory it shrinks or misaligns, inflight regions swapped under running queues.
/// Every test checks the daemon neither crashes nor blocks, and still serves a fresh connection.
extension KitTests {
@Suite("hostile front-end")
struct HostileFrontendTests {
    /// A pipe; the caller owns both ends.
    private func makePipe() throws -> (read: OwnedDescriptor, write: OwnedDescriptor) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw FakeFrontendError.system("pipe", errno) }
        return (OwnedDescriptor(fds[0]), OwnedDescriptor(fds[1]))
    }

    /// A blocking call descriptor that cannot take another signal: an eventfd one short of its maximum
    /// count, or a pipe whose buffer is full.
    private func saturatedCallDescriptor(_ kind: String) throws -> (OwnedDescriptor, [OwnedDescriptor]) {
        if kind == "eventfd" {
            let fd = OwnedDescriptor(vhu_eventfd(0, 0))
            _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) & ~O_NONBLOCK)
            var nearMax: UInt64 = 0xffff_ffff_ffff_fffe
            guard write(fd.rawValue, &nearMax, 8) == 8 else { throw FakeFrontendError.system("write", errno) }
            return (fd, [])
        }
        let (r, w) = try makePipe()
        _ = fcntl(w.rawValue, F_SETFL, fcntl(w.rawValue, F_GETFL) | O_NONBLOCK)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while write(w.rawValue, &chunk, chunk.count) > 0 {}
        _ = fcntl(w.rawValue, F_SETFL, fcntl(w.rawValue, F_GETFL) & ~O_NONBLOCK)
        return (w, [r])
    }

    @Test("a blocking call descriptor that cannot take a signal (full eventfd, full pipe) never blocks the queue",
          arguments: ["eventfd", "pipe"])
    func saturatedCallNeverBlocks(kind: String) throws {
        let d = try DeviceFixture(LoopbackDevice())
        let f = d.frontend, q = d.queue
        f.replyTimeoutMilliseconds = 3000
        let (call, keep) = try saturatedCallDescriptor(kind)
        try expectAck(f, .setVringCall, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [call.rawValue])
        let r = submitEcho(q, pattern(32))
        q.notifyDevice()
        #expect(waitUntil { q.publishedUsedIndex == 1 })
        expectEchoed(q.takeUsed().first, r)
        // The worker is not stuck in write(2): stopping the ring is answered.
        #expect(try f.getVringBase(0) == 1)
        withExtendedLifetime(keep) {}
        try expectFreshConnectionServed(after: d)
    }

    @Test("a call descriptor that fails (a pipe without a reader) stops the queue with EPIPE, no SIGPIPE")
    func brokenCallStopsQueue() throws {
        let d = try DeviceFixture(LoopbackDevice())
        let f = d.frontend, q = d.queue
        let err = try EventFD()
        try f.setVringErr(0, err)
        try barrier(f)  // the queue runs with the err descriptor before anything breaks it
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        close(fds[0])  // no reader: the daemon's write gets EPIPE
        let w = OwnedDescriptor(fds[1])
        try expectAck(f, .setVringCall, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [w.rawValue])
        _ = submitEcho(q, pattern(16))
        q.notifyDevice()
        #expect(err.wait(timeoutMilliseconds: 5000))
        #expect(q.takeUsed().count == 1)
        // The queue stopped after the failed interrupt: nothing more is served on it.
        _ = submitEcho(q, pattern(8))
        q.notifyDevice()
        expectNothingUsed(q)
        #expect(try f.getVringBase(0) == 1)
        try expectFreshConnectionServed(after: d)
    }

    @Test("GET_INFLIGHT_FD and SET_INFLIGHT_FD while queues run: the old region is never written after it goes",
          arguments: [FrontendRequest.getInflightFd, .setInflightFd])
    func inflightRegionSwappedUnderRunningQueue(request: FrontendRequest) throws {
        let d = try DeviceFixture(LoopbackDevice())
        let f = d.frontend, q = d.queue
        let (description, file) = try f.getInflightFd(queueCount: 1, queueSize: 16)
        // Restart the ring so that its worker tracks requests in the region.
        try f.setVringKick(0, q.kick)
        for i in 0..<3 { try expectEcho(q, pattern(40, seed: i)) }
        if request == .getInflightFd {
            _ = try f.getInflightFd(queueCount: 1, queueSize: 16)
        } else {
            // A region of its own, handed over as after a reconnect.
            let fd = vhu_memfd_create("inflight", 0)
            #expect(ftruncate(fd, off_t(description.mmapSize)) == 0)
            let other = OwnedDescriptor(fd)
            try f.setInflightFd(description, file: other.rawValue)
        }
        withExtendedLifetime(file) {}
        for i in 0..<20 { try expectEcho(q, pattern(40, seed: 10 + i)) }
        try expectFreshConnectionServed(after: d)
    }

    @Test("the front-end shrinks guest memory under a running queue: no SIGBUS, the queue stops, the daemon goes on")
    func memoryShrunkUnderRunningQueue() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, memorySize: 2 << 20, regionCount: 2)
        let f = d.frontend, memory = d.memory, q = d.queue
        let err = try EventFD()
        try f.setVringErr(0, err)
        try barrier(f)  // the queue runs with the err descriptor before anything breaks it
        try expectEcho(q)
        // Buffers in region 1, then the file loses region 1 (the rings stay in region 0).
        let input = memory.allocate(64, region: 1), output = memory.allocate(64, region: 1)
        memory.write(pattern(64), at: input)
        #expect(ftruncate(memory.file.rawValue, off_t(1 << 20)) == 0)
        q.submit([.readable(input, 64), .writable(output, 64)])
        q.notifyDevice()
        #expect(err.wait(timeoutMilliseconds: 5000))
        // The request in hand was finished on the zero page that replaced the lost one.
        #expect(waitUntil { q.publishedUsedIndex == 2 })
        _ = q.takeUsed()
        // The queue stays stopped; the connection still answers.
        _ = q.submit([.readable(memory.allocate(8, region: 0), 8), .writable(memory.allocate(8, region: 0), 8)])
        q.notifyDevice()
        expectNothingUsed(q)
        #expect(device.served() == 2)
        _ = try f.getVringBase(0)
        try expectFreshConnectionServed(after: d)
    }

    @Test("a region whose file offset misaligns the rings in the daemon's mapping: SET_VRING_ADDR is refused")
    func misalignedRegionOffset() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend, memory = d.memory, q = d.queue
        try f.setProtocolFeatures(try f.getProtocolFeatures())
        try f.setFeatures(try f.getFeatures())
        // The same addresses as the fake memory, but the daemon maps it from file offset 1.
        var region = memory.regions[0]
        region.mmapOffset = 1
        region.size -= 4096
        try expectAck(f, .setMemTable, MemoryTable(regions: [region]).encoded(), descriptors: [memory.file.rawValue])
        try f.setVringNum(0, 16)
        try expectNack(f, .setVringAddr, q.address.encoded())
        try expectFreshConnectionServed(after: d)
    }

    @Test("after a reconnect, a new call descriptor on a ring with used elements is signalled once (no lost interrupt)")
    func newCallOnUsedRingIsSignalled() throws {
        let daemon = try InProcessDaemon(device: LoopbackDevice())
        defer { daemon.stop() }
        let memory = try FakeGuestMemory()
        let q = try FakeQueue(index: 0, size: 16, memory: memory)
        do {
            let f = try daemon.connect()
            try manualSetUp(f, memory: memory, queues: [q])
            try expectEcho(q)
            #expect(try f.getVringBase(0) == 1)
        }
        // The driver may have missed the last interrupt with the old connection's descriptor.
        _ = q.call.drain()
        let f = try daemon.connect()
        try manualSetUp(f, memory: memory, queues: [q], base: 1)
        #expect(q.call.wait(timeoutMilliseconds: 5000))
        // And only once: the next interrupt comes with the next request.
        #expect(!q.call.wait(timeoutMilliseconds: 100))
        try expectEcho(q, pattern(20, seed: 3))
    }
}
}
