import BlockDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// Suspend as a migrating VMM does it: GET_VRING_BASE while reads are in flight on io_uring. The
/// reply comes only once every request the device took is completed in the used ring (and logged,
/// with logging on), so the base the VMM migrates has nothing outstanding; the stopped ring serves
/// nothing until the VMM starts it again.
@Suite("vhost-user-blk suspended with requests in flight")
struct BlockSuspendTests {
    @Test(arguments: [IOEngineKind.ioUring, .threads])
    func getVringBaseCompletesInFlightRequests(engine: IOEngineKind) throws {
        let bench = try BlockTestBench(sizeBytes: 16 << 20, engine: engine)
        let f = bench.fixture, q = bench.queue
        let log = try FakeDirtyLog(coveringBytes: f.memory.regions[1].guestPhysicalAddress + f.memory.regions[1].size)
        try f.frontend.startDirtyLogging(log, queues: [q])
        _ = log.takeDirtyPages()
        let data = (0..<40).map { _ in f.memory.allocate(65536, alignment: 4096) }
        for (i, address) in data.enumerated() {
            q.submit([.readable(bench.header(0, sector: UInt64(i) * 128), 16), .writable(address, 65536), .writable(f.memory.allocate(1), 1)])
        }
        q.notifyDevice()
        // The worker is at it: stop the ring now, with the rest of the reads taken or in flight.
        var used = try q.waitForUsed(1)
        let base = try f.frontend.getVringBase(0)
        #expect(q.publishedUsedIndex == base, "requests taken (\(base)) but not completed (\(q.publishedUsedIndex)) when the ring stopped")
        #expect(base > 0)
        let dirty = Set(log.takeDirtyPages())
        used += q.takeUsed()
        #expect(used.count == Int(base))
        let completed = Set(used.map { Int($0.id) })
        // Every completed read's data pages are in the log.
        for (i, address) in data.enumerated() where completed.contains(i * 3) {
            #expect(guestPages(address, 65536).allSatisfy(dirty.contains), "read \(i) not logged")
        }
        // Stopped: the rest waits, whatever the driver does.
        q.notifyDevice()
        #expect((try? q.waitForUsed(1, timeoutMilliseconds: 200)) == nil)
    }
}
