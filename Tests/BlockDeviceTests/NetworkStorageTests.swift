import BlockDevice
import NetworkStorageBed
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The RBD and NBD backends against the real engines: a throwaway Ceph cluster and nbdkit.
@Suite("vhost-user-blk on Ceph RBD and NBD through the fake front-end",
       .enabled(if: CephCluster.unavailableReason == nil && NBDServer.unavailableReason == nil,
                "SKIPPED: \(CephCluster.unavailableReason ?? NBDServer.unavailableReason ?? "")"))
struct NetworkStorageTests {
    static let ok: UInt8 = 0, ioError: UInt8 = 1, unsupported: UInt8 = 2

    enum Engine: String, CaseIterable { case rbd, nbd }

    /// A disk of `megabytes` MiB on `engine`, with a way to read the engine's copy of it back.
    final class Disk {
        let target: BlockTarget
        let cluster: CephCluster?
        let spec: String
        let server: NBDServer?

        init(_ engine: Engine, megabytes: Int = 4, name: String = #function) throws {
            switch engine {
            case .rbd:
                let cluster = try CephCluster.shared()
                spec = try cluster.createImage("t-\(UInt32.random(in: 0...UInt32.max))", megabytes: megabytes)
                var t = RBDTarget(spec: spec)!
                t.configFile = cluster.configFile
                t.timeoutSeconds = 20
                target = .rbd(t)
                self.cluster = cluster
                server = nil
            case .nbd:
                let server = try NBDServer(sizeBytes: megabytes << 20)
                spec = server.uri
                target = .nbd(NBDTarget(uri: server.uri))
                self.server = server
                cluster = nil
            }
        }

        /// The engine's bytes at `offset`: `rbd export`, or the file nbdkit serves.
        func bytes(at offset: Int, count: Int) throws -> [UInt8] {
            if let cluster { return Array(try cluster.export(spec)[offset..<offset + count]) }
            return server!.imageBytes(at: offset, count: count)
        }
    }

    @Test("writes (several guest buffers) reach the engine and reads return them", arguments: Engine.allCases)
    func writeThenRead(engine: Engine) throws {
        let disk = try Disk(engine)
        let bench = try BlockTestBench(network: disk.target)
        let data = pattern(12288, seed: 3)
        // Three buffers: one command per buffer for NBD, one writev for RBD.
        let h = bench.header(1, sector: 16), s = bench.memory.allocate(1)
        let d = [bench.memory.allocate(4096), bench.memory.allocate(4096), bench.memory.allocate(4096)]
        for i in 0..<3 { bench.memory.write(Array(data[i * 4096..<(i + 1) * 4096]), at: d[i]) }
        let (_, status) = try bench.run([.readable(h, 16), .readable(d[0], 4096), .readable(d[1], 4096), .readable(d[2], 4096), .writable(s, 1)], status: s)
        #expect(status == Self.ok)
        let (readStatus, back, length) = try bench.read(sector: 16, length: 12288)
        #expect(readStatus == Self.ok && back == data && length == 12289)
        bench.daemon.stop()
        #expect(try disk.bytes(at: 16 * 512, count: 12288) == data, "the engine's own copy")
    }

    @Test("many requests in flight at once on one queue all complete", arguments: Engine.allCases)
    func manyInFlight(engine: Engine) throws {
        let disk = try Disk(engine)
        let bench = try BlockTestBench(network: disk.target)
        let fq = bench.fixture.queues[0]
        var statuses: [UInt64] = []
        for i in 0..<32 { statuses.append(bench.submitWrite(sector: UInt64(i * 8), pattern(4096, seed: UInt8(i)))) }
        fq.notifyDevice()
        #expect(try fq.waitForUsed(32, timeoutMilliseconds: 20000).count == 32)
        #expect(statuses.allSatisfy { bench.memory.read($0, count: 1)[0] == Self.ok })
        for i in [0, 17, 31] {
            #expect(try bench.read(sector: UInt64(i * 8), length: 4096).1 == pattern(4096, seed: UInt8(i)))
        }
    }

    @Test("a sequential stream in one kick: adjacent reads and writes (one operation per run on RBD) each finish with their own status, length and bytes",
          arguments: Engine.allCases)
    func sequentialStream(engine: Engine) throws {
        let disk = try Disk(engine)
        let bench = try BlockTestBench(network: disk.target)
        let fq = bench.fixture.queues[0], count = 80  // more than one run holds (64)
        func block(_ i: Int) -> [UInt8] { pattern(4096, seed: UInt8(i)) }
        /// A 4 KiB request on block `i`: the odd ones in two buffers of 2 KiB.
        func submit(_ type: UInt32, block i: Int) -> (head: UInt16, data: [UInt64], status: UInt64) {
            let h = bench.header(type, sector: UInt64(i * 8)), s = bench.memory.allocate(1)
            let data = i % 2 == 0 ? [bench.memory.allocate(4096)] : [bench.memory.allocate(2048), bench.memory.allocate(2048)]
            bench.memory.write([0xff], at: s)
            let piece = 4096 / data.count
            if type == 1 { for (k, a) in data.enumerated() { bench.memory.write(Array(block(i)[k * piece..<(k + 1) * piece]), at: a) } }
            let buffers: [BufferSpec] = [.readable(h, 16)] + data.map { type == 1 ? .readable($0, piece) : .writable($0, piece) } + [.writable(s, 1)]
            return (fq.submit(buffers, indirect: true), data, s)
        }

        let writes = (0..<count).map { submit(1, block: $0) }
        fq.notifyDevice()
        let written = try fq.waitForUsed(count, timeoutMilliseconds: 20000)
        #expect(Set(written.map { UInt16($0.id) }) == Set(writes.map(\.head)))
        #expect(written.allSatisfy { $0.length == 1 })
        #expect(writes.allSatisfy { bench.memory.read($0.status, count: 1)[0] == Self.ok })

        // Reads of every block in one kick, split by a write elsewhere: two runs around it.
        var reads = (0..<count / 2).map { submit(0, block: $0) }
        let elsewhere = submit(1, block: 200)
        reads += (count / 2..<count).map { submit(0, block: $0) }
        fq.notifyDevice()
        let used = try fq.waitForUsed(count + 1, timeoutMilliseconds: 20000)
        #expect(used.count == count + 1)
        let lengths = Dictionary(uniqueKeysWithValues: used.map { (UInt16($0.id), $0.length) })
        #expect(lengths[elsewhere.head] == 1 && bench.memory.read(elsewhere.status, count: 1)[0] == Self.ok)
        for (i, r) in reads.enumerated() {
            let bytes = r.data.flatMap { bench.memory.read($0, count: 4096 / r.data.count) }
            #expect(lengths[r.head] == 4097 && bench.memory.read(r.status, count: 1)[0] == Self.ok && bytes == block(i), "block \(i)")
        }
        #expect(try bench.read(sector: 1600, length: 4096).1 == block(200))
        bench.daemon.stop()
        #expect(try disk.bytes(at: 0, count: count * 4096) == (0..<count).flatMap { block($0) }, "the engine's own copy")
    }

    @Test("FLUSH and GET_ID succeed", arguments: Engine.allCases)
    func flushAndID(engine: Engine) throws {
        let disk = try Disk(engine)
        let bench = try BlockTestBench(network: disk.target)
        #expect(bench.fixture.features & VirtioBlock.Feature.flush != 0)
        let h = bench.header(4), s = bench.memory.allocate(1)
        let (used, status) = try bench.run([.readable(h, 16), .writable(s, 1)], status: s)
        #expect(status == Self.ok && used.length == 1)
        let hid = bench.header(8), id = bench.memory.allocate(20), s2 = bench.memory.allocate(1)
        let (usedID, statusID) = try bench.run([.readable(hid, 16), .writable(id, 20), .writable(s2, 1)], status: s2)
        #expect(statusID == Self.ok && usedID.length == 21)
    }

    @Test("DISCARD and WRITE_ZEROES (several ranges) zero the ranges on the engine; bad ranges are refused", arguments: Engine.allCases)
    func discardAndWriteZeroes(engine: Engine) throws {
        let disk = try Disk(engine)
        let data = pattern(64 << 10, seed: 9)
        let zero = [UInt8](repeating: 0, count: 4096)
        do {
        let bench = try BlockTestBench(network: disk.target)
        #expect(bench.fixture.features & (VirtioBlock.Feature.discard | VirtioBlock.Feature.writeZeroes)
                == VirtioBlock.Feature.discard | VirtioBlock.Feature.writeZeroes)
        #expect(try bench.write(sector: 0, data) == Self.ok)
        let h = bench.header(13), s = bench.memory.allocate(1)
        let (r, n) = bench.ranges([(sector: 0, sectors: 8, flags: 0), (sector: 16, sectors: 8, flags: 1)])
        #expect(try bench.run([.readable(h, 16), .readable(r, n), .writable(s, 1)], status: s).1 == Self.ok)
        #expect(try bench.read(sector: 0, length: 4096).1 == zero)
        #expect(try bench.read(sector: 8, length: 4096).1 == Array(data[4096..<8192]), "sectors 8-15 untouched")
        #expect(try bench.read(sector: 16, length: 4096).1 == zero)
        // DISCARD must leave readable blocks; RBD and nbdkit's file both read discarded blocks as zeroes.
        let hd = bench.header(11), sd = bench.memory.allocate(1)
        let (rd, nd) = bench.ranges([(sector: 64, sectors: 64, flags: 0)])
        #expect(try bench.run([.readable(hd, 16), .readable(rd, nd), .writable(sd, 1)], status: sd).1 == Self.ok)
        }
        let onEngine = try disk.bytes(at: 0, count: 64 << 10)
        #expect(Array(onEngine[0..<4096]) == zero && Array(onEngine[8192..<12288]) == zero)
        #expect(Array(onEngine[4096..<8192]) == Array(data[4096..<8192]))

        let again = try BlockTestBench(network: disk.target)
        let hb = again.header(11), sb = again.memory.allocate(1)
        let (rb, nb) = again.ranges([(sector: 0, sectors: 8, flags: 1)])
        #expect(try again.run([.readable(hb, 16), .readable(rb, nb), .writable(sb, 1)], status: sb).1 == Self.unsupported, "DISCARD takes no flags")
        let hp = again.header(13), sp = again.memory.allocate(1)
        let (rp, np) = again.ranges([(sector: 8184, sectors: 16, flags: 0)])
        #expect(try again.run([.readable(hp, 16), .readable(rp, np), .writable(sp, 1)], status: sp).1 == Self.ioError, "past the end")
        #expect(try again.read(sector: 8191, length: 1024).0 == Self.ioError, "a read past the end")
    }

    @Test("an RBD snapshot is served read-only with the snapshot's data")
    func rbdSnapshot() throws {
        let disk = try Disk(.rbd)
        let cluster = try #require(disk.cluster)
        do {
            let bench = try BlockTestBench(network: disk.target)
            #expect(try bench.write(sector: 0, pattern(4096, seed: 1)) == Self.ok)
        }
        try cluster.rbd(["snap", "create", "\(disk.spec)@s1"])
        guard case var .rbd(t) = disk.target else { return }
        t.snapshot = "s1"
        let snap = try BlockTestBench(network: .rbd(t))
        #expect(snap.fixture.features & VirtioBlock.Feature.readOnly != 0)
        #expect(snap.fixture.features & VirtioBlock.Feature.discard == 0)
        #expect(try snap.write(sector: 0, pattern(4096, seed: 2)) == Self.ioError)
        #expect(try snap.read(sector: 0, length: 4096).1 == pattern(4096, seed: 1))
    }

    @Test("rbd resize reaches the device and a config change goes to the front-end")
    func rbdResize() throws {
        let disk = try Disk(.rbd, megabytes: 4)
        let bench = try BlockTestBench(network: disk.target)
        let backendSocket = try #require(bench.fixture.backendSocket)
        _ = try bench.fixture.frontend.getQueueNum()
        try disk.cluster!.rbd(["resize", "--size", "8M", disk.spec])
        // librbd refreshes the image header when the cluster tells it the header changed: asynchronous.
        var size: UInt64?
        let deadline = ContinuousClock.now + .seconds(10)
        while size == nil && ContinuousClock.now < deadline {
            size = bench.device.checkResize()
            if size == nil { var p = pollfd(fd: -1, events: 0, revents: 0); _ = poll(&p, 0, 50) }
        }
        #expect(size == 8 << 20)
        var p = pollfd(fd: backendSocket.rawValue, events: Int16(POLLIN), revents: 0)
        try #require(poll(&p, 1, 5000) == 1, "no config change message within 5 s")
        let message = try #require(try MessageChannel(socket: backendSocket).receive())
        #expect(message.header.request == BackendRequest.configChangeMsg.rawValue)
        #expect(try bench.write(sector: 12000, pattern(4096, seed: 4)) == Self.ok, "the new space is writable")
    }

    @Test("a second writer on an RBD image is refused; read-only it is served; forced, its writes fail while the first holds the lock")
    func rbdExclusiveLock() throws {
        let disk = try Disk(.rbd)
        let first = try BlockTestBench(network: disk.target)
        #expect(try first.write(sector: 0, pattern(4096, seed: 5)) == Self.ok)
        #expect(throws: BlockBackendError.self) { try BlockBackend(target: disk.target) }
        let reader = try BlockTestBench(readOnly: true, network: disk.target)
        #expect(try reader.read(sector: 0, length: 4096).1 == pattern(4096, seed: 5))
        guard case var .rbd(forced) = disk.target else { return }
        forced.force = true
        forced.timeoutSeconds = 10
        let second = try BlockTestBench(network: .rbd(forced))
        #expect(try second.write(sector: 0, pattern(4096, seed: 6)) == Self.ioError)
        #expect(try first.read(sector: 0, length: 4096).1 == pattern(4096, seed: 5), "the first daemon's data stands")
        #expect(try first.write(sector: 8, pattern(4096, seed: 7)) == Self.ok, "and it keeps writing")
    }

    @Test("NBD: a stopped server fails I/O with IOERR after the retry time; restarted, I/O works again (no daemon restart)")
    func nbdServerStopped() throws {
        let disk = try Disk(.nbd)
        let server = try #require(disk.server)
        var t = NBDTarget(uri: server.uri)
        t.retrySeconds = 1
        let bench = try BlockTestBench(network: .nbd(t))
        #expect(try bench.write(sector: 0, pattern(4096, seed: 1)) == Self.ok)
        server.stop()
        #expect(try bench.write(sector: 8, pattern(4096, seed: 2)) == Self.ioError)
        #expect(try bench.read(sector: 0, length: 4096).0 == Self.ioError)
        try server.start()
        // The engine reconnects on its next request (at most every half second).
        let deadline = ContinuousClock.now + .seconds(10)
        var status = Self.ioError
        while status != Self.ok && ContinuousClock.now < deadline { status = try bench.read(sector: 0, length: 4096).0 }
        #expect(status == Self.ok)
        #expect(try bench.read(sector: 0, length: 4096).1 == pattern(4096, seed: 1))
    }

    @Test("NBD: requests in flight when the server goes away complete after it comes back")
    func nbdReconnect() throws {
        let disk = try Disk(.nbd)
        let server = try #require(disk.server)
        var t = NBDTarget(uri: server.uri)
        t.retrySeconds = 20
        let bench = try BlockTestBench(network: .nbd(t))
        #expect(try bench.write(sector: 0, pattern(4096, seed: 1)) == Self.ok)
        server.stop()
        let fq = bench.fixture.queues[0]
        let s = bench.submitWrite(sector: 8, pattern(4096, seed: 2))
        fq.notifyDevice()
        try fq.waitUntilTaken()
        #expect(throws: FakeFrontendError.self, "the write waits for the server") { try fq.waitForUsed(1, timeoutMilliseconds: 300) }
        try server.start()
        #expect(try fq.waitForUsed(1, timeoutMilliseconds: 10000).count == 1)
        #expect(bench.memory.read(s, count: 1)[0] == Self.ok)
        #expect(server.imageBytes(at: 4096, count: 4096) == pattern(4096, seed: 2), "written after the reconnect")
    }

    @Test("NBD: 32 writes of 1 MiB at once fill the socket and all complete, and 32 reads of 1 MiB read them back")
    func nbdSocketFull() throws {
        let mib = 1 << 20, count = 32
        let disk = try Disk(.nbd, megabytes: count + 1)
        // Data buffers go in the second of two regions; the reads reuse the writes' buffers.
        let bench = try BlockTestBench(memorySize: 2 * (count + 1) * mib, network: disk.target)
        let fq = bench.fixture.queues[0]
        let base = pattern(mib, seed: 5)
        func data(_ i: Int) -> [UInt8] { [UInt8(i), UInt8(i), UInt8(i), UInt8(i)] + base.dropFirst(4) }
        let buffers = (0..<count).map { _ in bench.memory.allocate(mib) }
        func submitAll(write: Bool) -> [(data: UInt64, status: UInt64)] {
            var requests: [(UInt64, UInt64)] = []
            for (i, d) in buffers.enumerated() {
                let h = bench.header(write ? 1 : 0, sector: UInt64(i * mib / 512)), s = bench.memory.allocate(1)
                bench.memory.write(write ? data(i) : [UInt8](repeating: 0, count: mib), at: d)
                bench.memory.write([0xff], at: s)
                let buffer: BufferSpec = write ? .readable(d, mib) : .writable(d, mib)
                fq.submit([.readable(h, 16), buffer, .writable(s, 1)])
                requests.append((d, s))
            }
            fq.notifyDevice()
            return requests
        }
        let writes = submitAll(write: true)
        #expect(try fq.waitForUsed(count, timeoutMilliseconds: 30000).count == count)
        #expect(writes.allSatisfy { bench.memory.read($0.status, count: 1)[0] == Self.ok })
        for i in [0, 13, count - 1] { #expect(disk.server!.imageBytes(at: i * mib, count: mib) == data(i), "request \(i) on the server") }
        let reads = submitAll(write: false)
        #expect(try fq.waitForUsed(count, timeoutMilliseconds: 30000).count == count)
        for (i, r) in reads.enumerated() {
            #expect(bench.memory.read(r.status, count: 1)[0] == Self.ok && bench.memory.read(r.data, count: mib) == data(i), "read \(i)")
        }
    }

    @Test("NBD: a queue stopped while the server hangs stops after the retry time, its request failed with IOERR")
    func nbdStopWithHungServer() throws {
        let disk = try Disk(.nbd)
        let server = try #require(disk.server)
        var t = NBDTarget(uri: server.uri)
        t.retrySeconds = 2
        let bench = try BlockTestBench(network: .nbd(t))
        #expect(try bench.write(sector: 0, pattern(4096, seed: 1)) == Self.ok)
        server.pause()
        defer { server.resume() }
        let fq = bench.fixture.queues[0]
        let s = bench.submitWrite(sector: 8, pattern(4096, seed: 2))
        fq.notifyDevice()
        try fq.waitUntilTaken()
        #expect(throws: FakeFrontendError.self, "the write waits for the server") { try fq.waitForUsed(1, timeoutMilliseconds: 300) }
        let start = ContinuousClock.now
        _ = try bench.fixture.frontend.getVringBase(0)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(8), "stopping the queue took \(elapsed)")
        #expect(fq.takeUsed().count == 1)
        #expect(bench.memory.read(s, count: 1)[0] == Self.ioError)
    }

    @Test("RBD: with the OSD stopped, a write waits and completes once it is restarted, or fails with IOERR after --ceph-timeout; the daemon serves on, and a queue stops within the timeout")
    func rbdLostOSD() throws {
        let cluster = try CephCluster(durable: true)  // its own: the OSD goes away and comes back
        defer { cluster.stop() }
        func disk(_ name: String, timeout: Int?) throws -> BlockTarget {
            var t = RBDTarget(spec: try cluster.createImage(name, megabytes: 4))!
            t.configFile = cluster.configFile
            t.timeoutSeconds = timeout
            return .rbd(t)
        }
        let patient = try BlockTestBench(network: try disk("patient", timeout: nil))
        let impatient = try BlockTestBench(network: try disk("impatient", timeout: 2))
        #expect(try patient.write(sector: 0, pattern(4096, seed: 1)) == Self.ok)
        #expect(try impatient.write(sector: 0, pattern(4096, seed: 2)) == Self.ok)
        try cluster.stopOSD()

        let fq = patient.fixture.queues[0]
        let s = patient.submitWrite(sector: 8, pattern(4096, seed: 3))
        fq.notifyDevice()
        // The impatient disk's writes fail after its 2 s timeout (two adjacent ones in one kick: one
        // operation, both requests fail); the patient one's is still waiting.
        let failing = [impatient.submitWrite(sector: 8, pattern(4096, seed: 4)), impatient.submitWrite(sector: 16, pattern(4096, seed: 4))]
        impatient.fixture.queues[0].notifyDevice()
        #expect(try impatient.fixture.queues[0].waitForUsed(2, timeoutMilliseconds: 30000).count == 2)
        #expect(failing.map { impatient.memory.read($0, count: 1)[0] } == [Self.ioError, Self.ioError])
        #expect(fq.takeUsed().isEmpty, "the write without a timeout waits for the OSD")

        try cluster.startOSD()
        #expect(try fq.waitForUsed(1, timeoutMilliseconds: 30000).count == 1)
        #expect(patient.memory.read(s, count: 1)[0] == Self.ok)
        #expect(try patient.read(sector: 0, length: 8192).1 == pattern(4096, seed: 1) + pattern(4096, seed: 3))
        #expect(try impatient.write(sector: 8, pattern(4096, seed: 5)) == Self.ok, "the same daemon writes again after recovery")
        #expect(try impatient.read(sector: 0, length: 4096).1 == pattern(4096, seed: 2))
        // Stopped again: a queue stopped with a write waiting for the OSD stops within the timeout, the
        // write failed.
        try cluster.stopOSD()
        defer { try? cluster.startOSD() }  // the patient disk closes its image as the test ends
        let iq = impatient.fixture.queues[0]
        let ih = impatient.header(1, sector: 16), id = impatient.memory.allocate(4096), istatus = impatient.memory.allocate(1)
        impatient.memory.write(pattern(4096, seed: 6), at: id)
        impatient.memory.write([0xff], at: istatus)
        iq.submit([.readable(ih, 16), .readable(id, 4096), .writable(istatus, 1)])
        iq.notifyDevice()
        // Stopped before the worker took it, the write would stay in the ring, not in the engine.
        try iq.waitUntilTaken()
        let stopping = ContinuousClock.now
        _ = try impatient.fixture.frontend.getVringBase(0)
        #expect(ContinuousClock.now - stopping < .seconds(5), "stopping the queue took \(ContinuousClock.now - stopping)")
        #expect(iq.takeUsed().count == 1)
        #expect(impatient.memory.read(istatus, count: 1)[0] == Self.ioError)
    }
}
