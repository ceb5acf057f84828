import Testing
import VhostUserKit
import VhostUserTesting

/// Dirty logging for live migration (SET_LOG_BASE, LOG_ALL, the rings' log flag), seen from the
/// front-end: which bits of the shared log the back-end sets.
extension KitTests {
    @Suite("Dirty log") struct DirtyLogTests {
        /// Two 2 MiB regions at guest address 4 GiB; the log covers all of it.
        static func fixture() throws -> (DeviceFixture<LoopbackDevice>, FakeDirtyLog) {
            let f = try DeviceFixture(LoopbackDevice(), queueSizes: [16], memorySize: 4 << 20, regionCount: 2)
            let end = f.memory.regions.last!.guestPhysicalAddress + f.memory.regions.last!.size
            return (f, try FakeDirtyLog(coveringBytes: end))
        }

        /// Submits a request whose `input` is echoed into `writable` buffers; returns once it is used.
        static func echo(_ q: FakeQueue, input: [UInt8], writable: [(UInt64, Int)], indirect: Bool = false) throws -> UsedElement {
            let source = q.memory.allocate(input.count, region: 0)
            q.memory.write(input, at: source)
            q.submit([.readable(source, input.count)] + writable.map { .writable($0.0, $0.1) }, indirect: indirect)
            q.notifyDevice()
            return try q.waitForUsed(1)[0]
        }

        @Test("logs exactly the pages of the bytes written (across pages and regions) and of the used ring", arguments: [false, true])
        func logsWrittenPages(indirect: Bool) throws {
            let (f, log) = try Self.fixture()
            try f.frontend.startDirtyLogging(log, queues: f.queues)
            let boundary = f.memory.regions[1].guestPhysicalAddress
            // The buffers below lie in the first 100 000 bytes of region 1: nothing else may go there.
            #expect(f.memory.allocate(100_000, region: 1) == boundary)
            // 300 bytes across the region boundary, then 8000 bytes starting 8 bytes before a page of
            // which only the first 4700 are written, then a page nothing reaches.
            let a = (boundary - 100, 300), b = (boundary + 10 * 4096 - 8, 8000), c = (boundary + 20 * 4096, 4096)
            let used = try Self.echo(f.queue, input: pattern(5000), writable: [a, b, c], indirect: indirect)
            #expect(used.length == 5000)
            #expect(f.memory.read(b.0, count: 4700) == Array(pattern(5000)[300...]))
            let expected = Set(guestPages(a.0, 300) + guestPages(b.0, 4700) + guestPages(f.queue.usedRing, f.queue.layout.usedRingBytes))
            #expect(guestPages(b.0, 4700).count == 3 && guestPages(a.0, 300).count == 2)
            #expect(Set(log.takeDirtyPages()) == expected)
        }

        @Test("nothing is logged without LOG_ALL, or after logging stops, even with a log shared")
        func nothingWhenOff() throws {
            let (f, log) = try Self.fixture()
            #expect(try f.frontend.setLogBase(log.description, file: log.file.rawValue) == 0)
            let out = f.memory.allocate(4096)
            _ = try Self.echo(f.queue, input: pattern(4096), writable: [(out, 4096)])
            #expect(log.takeDirtyPages().isEmpty)

            try f.frontend.startDirtyLogging(log, queues: f.queues)
            _ = try Self.echo(f.queue, input: pattern(100), writable: [(out, 100)])
            #expect(log.takeDirtyPages().contains(out / 4096))
            try f.frontend.stopDirtyLogging(queues: f.queues)
            _ = log.takeDirtyPages()
            _ = try Self.echo(f.queue, input: pattern(100), writable: [(out, 100)])
            #expect(log.takeDirtyPages().isEmpty)
        }

        @Test("a ring without the log flag logs nothing even with LOG_ALL")
        func ringFlagRequired() throws {
            let (f, log) = try Self.fixture()
            try f.frontend.startDirtyLogging(log, queues: f.queues)
            try f.frontend.setVringAddr(f.queue.address)
            _ = try f.frontend.getQueueNum()
            _ = log.takeDirtyPages()
            _ = try Self.echo(f.queue, input: pattern(64), writable: [(f.memory.allocate(64), 64)])
            #expect(log.takeDirtyPages().isEmpty)
        }

        @Test("a log replaced while the ring runs: writes go to the new one, the old one is left alone")
        func replacedLog() throws {
            let (f, first) = try Self.fixture()
            try f.frontend.startDirtyLogging(first, queues: f.queues)
            let out = f.memory.allocate(64)
            _ = try Self.echo(f.queue, input: pattern(64), writable: [(out, 64)])
            #expect(first.takeDirtyPages().contains(out / 4096))

            let end = f.memory.regions.last!.guestPhysicalAddress + f.memory.regions.last!.size
            let second = try FakeDirtyLog(coveringBytes: end * 2, offset: 4096)
            #expect(try f.frontend.setLogBase(second.description, file: second.file.rawValue) == 0)
            // The worker may still have marked the first log after the echo returned (its avail_event
            // write); once SET_LOG_BASE has replied, the workers have restarted on the second one.
            _ = first.takeDirtyPages()
            let out2 = f.memory.allocate(64, region: 1)
            _ = try Self.echo(f.queue, input: pattern(64, seed: 2), writable: [(out2, 64)])
            #expect(second.takeDirtyPages().contains(out2 / 4096))
            #expect(first.takeDirtyPages().isEmpty)
            #expect(second.leadingBytes.allSatisfy { $0 == 0 })
        }

        @Test("bad log sizes, offsets and descriptors are refused; the device keeps serving")
        func badLogsRefused() throws {
            let (f, log) = try Self.fixture()
            let fd = log.file.rawValue
            let size = UInt64(log.size)
            #expect(try f.frontend.setLogBase(LogDescription(mmapSize: 0, mmapOffset: 0), file: fd) != 0)
            #expect(try f.frontend.setLogBase(LogDescription(mmapSize: size + 1, mmapOffset: 0), file: fd) != 0)
            #expect(try f.frontend.setLogBase(LogDescription(mmapSize: size, mmapOffset: 4096), file: fd) != 0)
            #expect(try f.frontend.setLogBase(LogDescription(mmapSize: size, mmapOffset: UInt64.max - 10), file: fd) != 0)
            #expect(try f.frontend.setLogBase(LogDescription(mmapSize: DirtyLog.maximumSize + 1, mmapOffset: 0), file: fd) != 0)
            try f.frontend.send(.setLogBase, payload: log.description.encoded())
            #expect(try U64Payload(decoding: try f.frontend.receiveReply(to: .setLogBase).payload, for: .setLogBase).value != 0)
            try expectEcho(f.queue)
        }

        @Test("a log too small for the guest's memory: writes beyond it are not logged, and nothing breaks")
        func logTooSmall() throws {
            let (f, _) = try Self.fixture()
            let small = try FakeDirtyLog(coveringBytes: f.memory.regions[1].guestPhysicalAddress)
            try f.frontend.startDirtyLogging(small, queues: f.queues)
            _ = small.takeDirtyPages()
            let out = f.memory.allocate(64, region: 1)
            _ = try Self.echo(f.queue, input: pattern(64), writable: [(out, 64)])
            #expect(f.memory.read(out, count: 64) == pattern(64))
            #expect(!small.takeDirtyPages().contains(out / 4096))
        }

        @Test("SET_LOG_BASE is refused unless LOG_SHMFD was negotiated")
        func needsLogShmfd() throws {
            let f = try DeviceFixture(LoopbackDevice(), profile: .qemu)
            try f.frontend.setProtocolFeatures(f.frontend.protocolFeatures.subtracting(.logShmfd))
            let log = try FakeDirtyLog(coveringBytes: 8 << 30)
            #expect(try f.frontend.setLogBase(log.description, file: log.file.rawValue) != 0)
        }

        @Test("GET_FEATURES offers LOG_ALL and GET_PROTOCOL_FEATURES LOG_SHMFD and DEVICE_STATE (QEMU's migration blockers)")
        func offered() throws {
            let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
            #expect(try f.getFeatures() & VirtioFeature.logAll != 0)
            #expect(try f.getProtocolFeatures().isSuperset(of: [.logShmfd, .deviceState]))
        }
    }
}
