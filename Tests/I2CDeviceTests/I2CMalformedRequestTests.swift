import I2CDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Requests a hostile or broken driver sends: each gets ERR (or, without a status byte, is returned
/// unprocessed), changes nothing on the bus, and the queue goes on serving.
@Suite("virtio-i2c malformed requests")
struct I2CMalformedRequestTests {
    /// A bench: the standard bus under a harness, and a check that the queue still serves afterwards.
    struct Bench {
        let path = temporaryPath("malformed")
        let harness: GroupHarness
        let driver: I2CTestDriver
        let eeprom: EEPROM
        let bus: I2CBus

        init() throws {
            let (bus, eeprom, _) = try standardBus(eepromFile: path)
            self.bus = bus
            self.eeprom = eeprom
            harness = try GroupHarness(device: I2CDevice(bus: bus), queueSize: 256)
            driver = I2CTestDriver(harness: harness)
        }

        var memory: FakeGuestMemory { harness.memory }

        /// Submits raw buffers and returns the used element and the status byte at `status`.
        func raw(_ buffers: [BufferSpec], status: UInt64?) -> (UsedElement?, UInt8?) {
            if let status { memory.write([0xee], at: status) }
            harness.queue(0).submit(buffers)
            harness.run()
            return (harness.queue(0).takeUsed().first, status.map { memory.read($0, count: 1)[0] })
        }

        func header(field: UInt16 = 0xa0, flags: UInt32 = 0) -> UInt64 {
            let h = memory.allocate(8)
            withUnsafeBytes(of: field.littleEndian) { memory.write(Array($0), at: h) }
            withUnsafeBytes(of: flags.littleEndian) { memory.write(Array($0), at: h + 4) }
            return h
        }

        /// The queue still answers a combined write+read, and the EEPROM was not written.
        func stillServes() throws {
            let back = try driver.run([.write(address(0x50), [0, 0]), .read(address(0x50), 4)])
            #expect(back.map(\.status) == [ok, ok])
            #expect(back[1].data == [0xff, 0xff, 0xff, 0xff])
        }

        func cleanUp() { unlink(path) }
    }

    @Test("an out_hdr shorter than 8 bytes gets ERR")
    func shortHeader() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let h = b.header(), s = b.memory.allocate(1)
        let (used, status) = b.raw([.readable(h, 4), .writable(s, 1)], status: s)
        #expect(status == err && used?.length == 1)
        try b.stillServes()
    }

    @Test("a request without a device-writable status byte is returned unprocessed (used length 0)")
    func missingStatus() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let h = b.header(), d = b.memory.allocate(3)
        b.memory.write([0, 0, 0x42], at: d)
        let (used, _) = b.raw([.readable(h, 8), .readable(d, 3)], status: nil)
        #expect(used?.length == 0)
        try b.stillServes()
    }

    @Test("reserved flag bits get ERR", arguments: [UInt32(1 << 2), 1 << 31, 0xffff_fffc])
    func unknownFlags(flags: UInt32) throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let s = b.driver.submit(field: 0xa0, flags: flags, write: [0, 0, 0x42])
        #expect(try b.driver.outcomes([s])[0].status == err)
        try b.stillServes()
    }

    @Test("a buffer longer than 8192 bytes gets ERR, read or write")
    func oversizedBuffers() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let w = b.driver.submit(field: 0xa0, flags: 0, write: [0, 0] + [UInt8](repeating: 0x42, count: 8191))
        #expect(try b.driver.outcomes([w])[0].status == err)
        let r = b.driver.submit(field: 0xa0, flags: VirtioI2C.Flag.read, readLength: 8193)
        let outcome = try b.driver.outcomes([r])[0]
        #expect(outcome.status == err && outcome.usedLength == 8194)
        let largest = b.driver.submit(field: 0xa0, flags: VirtioI2C.Flag.read, readLength: 8192)
        #expect(try b.driver.outcomes([largest])[0].status == ok)
        try b.stillServes()
    }

    @Test("a read with bytes to write, or a write with device-writable bytes besides the status, gets ERR")
    func directionMismatch() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let h = b.header(flags: VirtioI2C.Flag.read), d = b.memory.allocate(2), s = b.memory.allocate(1)
        var (used, status) = b.raw([.readable(h, 8), .readable(d, 2), .writable(s, 1)], status: s)
        #expect(status == err && used?.length == 1)
        let h2 = b.header(flags: 0), r = b.memory.allocate(4), s2 = b.memory.allocate(1)
        (used, status) = b.raw([.readable(h2, 8), .writable(r, 4), .writable(s2, 1)], status: s2)
        #expect(status == err && used?.length == 5)
        try b.stillServes()
    }

    @Test("an address field with bit 0 set, or a 7-bit address with a high byte, gets ERR", arguments: [UInt16(0x00a1), 0x01a0])
    func invalidAddressField(field: UInt16) throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let s = b.driver.submit(field: field, flags: VirtioI2C.Flag.read, readLength: 1)
        #expect(try b.driver.outcomes([s])[0].status == err)
        try b.stillServes()
    }

    @Test("a malformed request fails its whole transaction, which does not run")
    func malformedMemberFailsTransaction() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let write = b.driver.submit(field: 0xa0, flags: VirtioI2C.Flag.failNext, write: [0, 0, 0x42])
        let bad = b.driver.submit(field: 0xa0, flags: VirtioI2C.Flag.failNext | 1 << 5, readLength: 1)
        let last = b.driver.submit(field: 0xa0, flags: VirtioI2C.Flag.read, readLength: 1)
        #expect(try b.driver.outcomes([write, bad, last]).map(\.status) == [err, err, err])
        try b.stillServes()
    }

    @Test("a transaction longer than 42 messages fails whole, up to its last request; the next one runs")
    func overlongTransaction() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let requests = (0..<50).map { i in
            b.driver.submit(field: 0xa0, flags: i < 49 ? VirtioI2C.Flag.failNext : 0, write: [0, 0, 0x42])
        }
        let outcomes = try b.driver.outcomes(requests)
        #expect(outcomes.allSatisfy { $0.status == err })
        #expect(outcomes.count == 50)
        try b.stillServes()
    }

    @Test("a chain of 40 messages (within the limit) runs as one transaction")
    func longTransactionWithinLimit() throws {
        let b = try Bench()
        defer { b.cleanUp() }
        let messages: [Message] = (0..<40).map { i in .write(address(0x50), [0, UInt8(i), UInt8(i)]) }
        #expect(try b.driver.run(messages).allSatisfy { $0.status == ok })
        #expect(b.bus.withLock { b.eeprom.contents(at: 0, count: 40) } == (0..<40).map { UInt8($0) })
    }
}
