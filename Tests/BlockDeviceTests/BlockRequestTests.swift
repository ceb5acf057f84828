import BlockDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

@Suite("virtio-blk requests through the fake front-end")
struct BlockRequestTests {
    static let ok: UInt8 = 0, ioError: UInt8 = 1, unsupported: UInt8 = 2

    @Test("a write reaches the image file and a read returns it", arguments: IOEngineKind.allCases)
    func writeThenRead(engine: IOEngineKind) throws {
        let bench = try BlockTestBench(engine: engine)
        let data = pattern(8192, seed: 7)
        #expect(try bench.write(sector: 8, data) == Self.ok)
        #expect(bench.fileBytes(at: 8 * 512, count: 8192) == data)
        let (status, back, length) = try bench.read(sector: 8, length: 8192)
        #expect(status == Self.ok)
        #expect(back == data)
        #expect(length == 8193, "data plus the status byte")
    }

    @Test("every front-end ordering serves reads", arguments: FrontendProfile.allCases)
    func orderings(profile: FrontendProfile) throws {
        let bench = try BlockTestBench(profile: profile)
        bench.writeFile(pattern(512, seed: 3), at: 0)
        let (status, back, _) = try bench.read(sector: 0, length: 512)
        #expect(status == Self.ok && back == pattern(512, seed: 3))
    }

    @Test("a header split across descriptors and data across regions and indirect tables still work")
    func splitHeaderAndIndirect() throws {
        let bench = try BlockTestBench()
        bench.writeFile(pattern(4096, seed: 9), at: 4096)
        let h = bench.header(0, sector: 8)
        let d1 = bench.memory.allocate(1000), d2 = bench.memory.allocate(3096), s = bench.memory.allocate(1)
        let (used, status) = try bench.run([.readable(h, 5), .readable(h + 5, 11), .writable(d1, 1000), .writable(d2, 3096), .writable(s, 1)],
                                           status: s, indirect: true)
        #expect(status == Self.ok && used.length == 4097)
        #expect(bench.memory.read(d1, count: 1000) + bench.memory.read(d2, count: 3096) == pattern(4096, seed: 9))
    }

    @Test("a request past the end of the disk gets IOERR and touches nothing")
    func pastTheEnd() throws {
        let bench = try BlockTestBench(sizeBytes: 1 << 20)
        let (status, _, _) = try bench.read(sector: 2048 - 1, length: 1024)
        #expect(status == Self.ioError)
        #expect(try bench.write(sector: 2048, pattern(512, seed: 1)) == Self.ioError)
        #expect(try bench.write(sector: UInt64.max / 512, pattern(512, seed: 1)) == Self.ioError)
    }

    @Test("data not a multiple of the block size gets IOERR")
    func misaligned() throws {
        let bench = try BlockTestBench()
        #expect(try bench.write(sector: 0, pattern(100, seed: 1)) == Self.ioError)
        let b4k = try BlockTestBench(logicalBlockSize: 4096)
        #expect(try b4k.write(sector: 1, pattern(4096, seed: 1)) == Self.ioError, "sector not aligned to 4 KiB")
        #expect(try b4k.write(sector: 8, pattern(4096, seed: 1)) == Self.ok)
    }

    @Test("FLUSH succeeds")
    func flush() throws {
        let bench = try BlockTestBench()
        let h = bench.header(4), s = bench.memory.allocate(1)
        let (used, status) = try bench.run([.readable(h, 16), .writable(s, 1)], status: s)
        #expect(status == Self.ok && used.length == 1)
    }

    @Test("GET_ID returns the serial, zero padded to 20 bytes")
    func getID() throws {
        let bench = try BlockTestBench(serial: "disk-0123")
        let h = bench.header(8), id = bench.memory.allocate(20), s = bench.memory.allocate(1)
        let (used, status) = try bench.run([.readable(h, 16), .writable(id, 20), .writable(s, 1)], status: s)
        #expect(status == Self.ok && used.length == 21)
        #expect(bench.memory.read(id, count: 20) == Array("disk-0123".utf8) + [UInt8](repeating: 0, count: 11))
    }

    @Test("an unknown request type gets UNSUPP")
    func unknownType() throws {
        let bench = try BlockTestBench()
        let h = bench.header(99), s = bench.memory.allocate(1)
        #expect(try bench.run([.readable(h, 16), .writable(s, 1)], status: s).1 == Self.unsupported)
    }

    @Test("DISCARD deallocates the range; WRITE_ZEROES zeroes it")
    func discardAndWriteZeroes() throws {
        let bench = try BlockTestBench(sizeBytes: 4 << 20)
        bench.writeFile(pattern(1 << 20, seed: 5), at: 1 << 20)
        let before = bench.allocatedBytes
        let h = bench.header(11), s = bench.memory.allocate(1)
        let (r, n) = bench.ranges([(sector: 2048, sectors: 2048, flags: 0)])
        #expect(try bench.run([.readable(h, 16), .readable(r, n), .writable(s, 1)], status: s).1 == Self.ok)
        #expect(bench.allocatedBytes <= before - (1 << 20) + 4096, "the discarded MiB is no longer allocated")
        #expect(bench.fileBytes(at: 1 << 20, count: 4096) == [UInt8](repeating: 0, count: 4096))

        bench.writeFile(pattern(8192, seed: 6), at: 0)
        let h2 = bench.header(13), s2 = bench.memory.allocate(1)
        let (r2, n2) = bench.ranges([(sector: 0, sectors: 8, flags: 0), (sector: 12, sectors: 4, flags: 1)])
        #expect(try bench.run([.readable(h2, 16), .readable(r2, n2), .writable(s2, 1)], status: s2).1 == Self.ok)
        #expect(bench.fileBytes(at: 0, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(bench.fileBytes(at: 4096, count: 2048) == Array(pattern(8192, seed: 6)[4096..<6144]), "sectors 8-11 untouched")
        #expect(bench.fileBytes(at: 6144, count: 2048) == [UInt8](repeating: 0, count: 2048))
    }

    @Test("DISCARD with flags, or ranges past the end, are refused")
    func badRanges() throws {
        let bench = try BlockTestBench(sizeBytes: 1 << 20)
        let h = bench.header(11), s = bench.memory.allocate(1)
        let (r, n) = bench.ranges([(sector: 0, sectors: 8, flags: 1)])
        #expect(try bench.run([.readable(h, 16), .readable(r, n), .writable(s, 1)], status: s).1 == Self.unsupported)
        let h2 = bench.header(13), s2 = bench.memory.allocate(1)
        let (r2, n2) = bench.ranges([(sector: 2040, sectors: 16, flags: 0)])
        #expect(try bench.run([.readable(h2, 16), .readable(r2, n2), .writable(s2, 1)], status: s2).1 == Self.ioError)
    }

    @Test("a read-only disk refuses writes, discards and write zeroes, and serves reads")
    func readOnly() throws {
        let bench = try BlockTestBench(readOnly: true)
        #expect(bench.fixture.features & VirtioBlock.Feature.readOnly != 0)
        #expect(try bench.write(sector: 0, pattern(512, seed: 1)) == Self.ioError)
        #expect(bench.fileBytes(at: 0, count: 512) == [UInt8](repeating: 0, count: 512))
        #expect(try bench.read(sector: 0, length: 512).0 == Self.ok)
    }

    @Test("a chain without a status byte is returned with length 0 and the queue goes on")
    func missingStatus() throws {
        let bench = try BlockTestBench()
        let h = bench.header(0)
        bench.queue.submit([.readable(h, 16)])
        bench.queue.notifyDevice()
        #expect(try bench.queue.waitForUsed(1).map(\.length) == [0])
        #expect(try bench.read(sector: 0, length: 512).0 == Self.ok)
    }

    @Test("a truncated header gets IOERR")
    func truncatedHeader() throws {
        let bench = try BlockTestBench()
        let h = bench.header(0), s = bench.memory.allocate(1)
        #expect(try bench.run([.readable(h, 8), .writable(s, 1)], status: s).1 == Self.ioError)
    }

    @Test("the null target reads zeroes and accepts writes")
    func nullTarget() throws {
        let bench = try BlockTestBench(sizeBytes: 1 << 30, target: "null")
        #expect(try bench.write(sector: 100, pattern(4096, seed: 2)) == Self.ok)
        let h = bench.header(0, sector: 100), d = bench.memory.allocate(4096), s = bench.memory.allocate(1)
        bench.memory.write(pattern(4096, seed: 8), at: d)
        let (used, status) = try bench.run([.readable(h, 16), .writable(d, 4096), .writable(s, 1)], status: s)
        #expect(status == Self.ok && used.length == 4097)
        #expect(bench.memory.read(d, count: 4096) == [UInt8](repeating: 0, count: 4096))
    }

    @Test("the config space reports capacity in 512-byte sectors, block size, queues and limits")
    func configSpace() throws {
        let bench = try BlockTestBench(sizeBytes: 8 << 20, logicalBlockSize: 4096, queues: 2)
        let frontend = bench.fixture.frontend
        let config = try frontend.getConfig(offset: 0, count: 60).data
        func u32(_ o: Int) -> UInt32 { config[o..<o + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ o: Int) -> UInt64 { config[o..<o + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        #expect(u64(0) == (8 << 20) / 512)
        #expect(u32(20) == 4096)
        // seg_max + header + status fit QEMU's default 128-entry rings (vhost-user-blk-pci queue-size),
        // whatever the daemon's --queue-size: Linux fills indirect tables up to seg_max + 2.
        #expect(u32(12) == 126, "seg_max")
        #expect(config[32] == 1, "writeback")
        #expect(UInt16(config[34]) | UInt16(config[35]) << 8 == 2)
        #expect(u32(44) == 8, "discard alignment in sectors")
        #expect(config[56] == 1)
        // The guest turns the write cache off (CONFIG_WCE), then reads it back.
        #expect(try frontend.setConfig(offset: 32, bytes: [0]) == 0)
        #expect(try frontend.getConfig(offset: 32, count: 1).data == [0])
        #expect(try frontend.setConfig(offset: 0, bytes: [1]) != 0, "capacity is read-only")
    }

    @Test("two queues serve requests independently")
    func multiQueue() throws {
        let bench = try BlockTestBench(queues: 2)
        #expect(try bench.write(sector: 0, pattern(512, seed: 1), on: 0) == Self.ok)
        #expect(try bench.write(sector: 1, pattern(512, seed: 2), on: 1) == Self.ok)
        #expect(try bench.read(sector: 0, length: 1024, on: 1).1 == pattern(512, seed: 1) + pattern(512, seed: 2))
    }

    @Test("a grown image file is reported to the front-end with a config change message")
    func resize() throws {
        let bench = try BlockTestBench(sizeBytes: 1 << 20)
        let backendSocket = try #require(bench.fixture.backendSocket)
        let frontend = bench.fixture.frontend
        // Requests are handled in order: once this GET is answered, the back-end channel is in place.
        _ = try frontend.getQueueNum()
        let fd = open(bench.image!, O_RDWR)
        ftruncate(fd, 2 << 20)
        close(fd)
        #expect(bench.device.checkResize() == 2 << 20)
        var p = pollfd(fd: backendSocket.rawValue, events: Int16(POLLIN), revents: 0)
        try #require(poll(&p, 1, 5000) == 1, "no config change message within 5 s")
        let message = try #require(try MessageChannel(socket: backendSocket).receive())
        #expect(message.header.request == BackendRequest.configChangeMsg.rawValue)
        let config = try frontend.getConfig(offset: 0, count: 8).data
        #expect(config.reversed().reduce(0) { $0 << 8 | UInt64($1) } == (2 << 20) / 512)
        #expect(try bench.read(sector: 3000, length: 512).0 == Self.ok, "the new space is readable")
    }

    @Test("O_DIRECT: page-aligned and unaligned guest buffers both reach the disk", arguments: [IOEngineKind.ioUring, .threads])
    func direct(engine: IOEngineKind) throws {
        let bench = try BlockTestBench(direct: true, engine: engine)
        #expect(bench.device.backend.direct)
        for misalignment in [0, 8] {
            let data = pattern(8192, seed: UInt8(misalignment + 1))
            let h = bench.header(1, sector: 16), d = bench.memory.allocate(8192 + 4096, alignment: 4096) + UInt64(misalignment)
            let s = bench.memory.allocate(1)
            bench.memory.write(data, at: d)
            #expect(try bench.run([.readable(h, 16), .readable(d, 8192), .writable(s, 1)], status: s).1 == Self.ok)
            #expect(bench.fileBytes(at: 16 * 512, count: 8192) == data, "misalignment \(misalignment)")
            let h2 = bench.header(0, sector: 16), d2 = bench.memory.allocate(8192 + 4096, alignment: 4096) + UInt64(misalignment)
            let s2 = bench.memory.allocate(1)
            #expect(try bench.run([.readable(h2, 16), .writable(d2, 8192), .writable(s2, 1)], status: s2).1 == Self.ok)
            #expect(bench.memory.read(d2, count: 8192) == data)
        }
    }

    @Test("a request outside guest memory stops the queue (error eventfd) instead of completing without a status")
    func malformedChainStopsTheQueue() throws {
        let bench = try BlockTestBench()
        let frontend = bench.fixture.frontend
        let err = try EventFD()
        try frontend.setVringErr(0, err)
        _ = try frontend.getQueueNum()  // a round trip: the queue runs with the err descriptor now
        let h = bench.header(0), s = bench.memory.allocate(1)
        bench.memory.write([0xff], at: s)
        bench.queue.submit([.readable(h, 16), .writable(0xdead_0000_0000, 4096), .writable(s, 1)])
        bench.queue.notifyDevice()
        #expect(err.wait(timeoutMilliseconds: 5000), "the error eventfd is signalled")
        #expect(bench.queue.takeUsed().isEmpty, "nothing completed")
        #expect(bench.memory.read(s, count: 1) == [0xff], "no status was written")
    }
}
