import I2CDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Every request shape and status of virtio-i2c (virtio 1.2, 5.19.6) through the request queue.
@Suite("virtio-i2c requests")
struct I2CRequestTests {
    @Test("every front-end ordering: a write sets the EEPROM across a page boundary, a combined write+read reads it back, the file holds it",
          arguments: FrontendProfile.allCases)
    func eepromThroughTheDaemon(profile: FrontendProfile) throws {
        let path = temporaryPath("daemon")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let d = try DeviceFixture(I2CDevice(bus: bus), profile: profile, queueSizes: [64])
        let driver = I2CTestDriver(fixture: d)
        let data: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        #expect(try driver.run(.write(address(0x50), [0x01, 0x1e] + data)) == Outcome(status: ok, data: [], usedLength: 1))
        // Page 0x100-0x11f: the last two bytes went to 0x11e-0x11f, the rest wrapped to 0x100.
        let back = try driver.run([.write(address(0x50), [0x01, 0x1e]), .read(address(0x50), 2)])
        #expect(back.map(\.status) == [ok, ok])
        #expect(back[1].data == [0x11, 0x22])
        #expect(back[1].usedLength == 3)
        let wrapped = try driver.run([.write(address(0x50), [0x01, 0x00]), .read(address(0x50), 2)])
        #expect(wrapped[1].data == [0x33, 0x44])
        let file = fileBytes(path)
        #expect(Array(file[0x11e...0x11f]) == [0x11, 0x22] && Array(file[0x100...0x101]) == [0x33, 0x44])
        #expect(file[0x120] == 0xff)
    }

    @Test("a sequential read of a whole page and beyond, in one read request split over several buffers")
    func readSplitOverBuffers() throws {
        let path = temporaryPath("split")
        defer { unlink(path) }
        let (bus, eeprom, _) = try standardBus(eepromFile: path)
        let pattern = (0..<64).map { UInt8($0 ^ 0x5a) }
        for page in 0..<2 {
            _ = pattern[(page * 32)..<(page * 32 + 32)].withUnsafeBytes { bytes in
                ([0x02, UInt8(page * 32)] + Array(bytes)).withUnsafeBytes { eeprom.write($0, block: 0) }
            }
        }
        let harness = try GroupHarness(device: I2CDevice(bus: bus))
        let driver = I2CTestDriver(harness: harness)
        _ = try driver.run(.write(address(0x50), [0x02, 0x00]))
        // out_hdr | data in three writable pieces | in_hdr, in an indirect table.
        let m = harness.memory
        let h = m.allocate(8), a = m.allocate(10), b = m.allocate(40), c = m.allocate(14), s = m.allocate(1)
        m.write([0xa0, 0, 0, 0, 2, 0, 0, 0], at: h)
        harness.queue(0).submit([.readable(h, 8), .writable(a, 10), .writable(b, 40), .writable(c, 14), .writable(s, 1)], indirect: true)
        harness.run()
        #expect(harness.queue(0).takeUsed().map(\.length) == [65])
        #expect(m.read(s, count: 1) == [ok])
        #expect(m.read(a, count: 10) + m.read(b, count: 40) + m.read(c, count: 14) == pattern)
    }

    @Test("the sensor reads a plausible temperature; its pointer and limit registers through single-message transfers")
    func sensorThroughTheQueue() throws {
        let path = temporaryPath("sensor")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        let t = try driver.run(.read(address(0x48), 2))
        #expect(t.status == ok)
        #expect(TemperatureSensor.decode(UInt16(t.data[0]) << 8 | UInt16(t.data[1])) == 21.5)
        #expect(try driver.run(.write(address(0x48), [3, 0x50, 0x00])).status == ok)
        #expect(try driver.run(.read(address(0x48), 2)).data == [0x50, 0x00])
        // i2cget's byte-data read: write the register number, read one byte, one transaction.
        let config = try driver.run([.write(address(0x48), [1]), .read(address(0x48), 1)])
        #expect(config.map(\.status) == [ok, ok] && config[1].data == [0])
    }

    @Test("an address that is not on the bus gets ERR, and a scan finds exactly the clients")
    func refusedAddresses() throws {
        let path = temporaryPath("scan")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus), queueSize: 256))
        #expect(try driver.run(.read(address(0x51), 1)) == Outcome(status: err, data: [0xcc], usedLength: 2))
        #expect(try driver.run(.write(address(0x20), [1, 2])).status == err)
        // i2cdetect: a quick write to every address, one transaction each.
        var found: [UInt16] = []
        for a in UInt16(0x03)...0x77 where try driver.run(.write(address(a), [])).status == ok { found.append(a) }
        #expect(found == [0x48, 0x50])
        // i2cdetect -r: receive byte.
        found = []
        for a in UInt16(0x03)...0x77 where try driver.run(.read(address(a), 1)).status == ok { found.append(a) }
        #expect(found == [0x48, 0x50])
    }

    @Test("zero-length requests (SMBus quick) carry no buffer and succeed on a client")
    func zeroLengthRequests() throws {
        let path = temporaryPath("quick")
        defer { unlink(path) }
        let (bus, eeprom, _) = try standardBus(eepromFile: path)
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        #expect(try driver.run(.write(address(0x50), [])) == Outcome(status: ok, data: [], usedLength: 1))
        #expect(try driver.run(.read(address(0x50), 0)) == Outcome(status: ok, data: [], usedLength: 1))
        #expect(bus.withLock { eeprom.pointer } == 0)
    }

    @Test("a driver that did not accept VIRTIO_I2C_F_ZERO_LENGTH_REQUEST is refused: every request gets ERR")
    func zeroLengthFeatureIsMandatory() throws {
        let path = temporaryPath("nofeature")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let device = I2CDevice(bus: bus)
        #expect(device.deviceFeatures & VirtioI2C.Feature.zeroLengthRequest != 0)
        let driver = I2CTestDriver(harness: try GroupHarness(device: device, features: VirtioFeature.kitFeatures))
        #expect(try driver.run(.read(address(0x48), 2)).status == err)
        #expect(try driver.run(.write(address(0x50), [])).status == err)
    }

    @Test("FAIL_NEXT: a failure mid-transaction fails the rest; the messages before it ran")
    func failureMidTransaction() throws {
        let path = temporaryPath("mid")
        defer { unlink(path) }
        let (bus, eeprom, sensor) = try standardBus(eepromFile: path)
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        // The sensor NACKs a pointer of 7: the EEPROM write before it happened, the read after it did not.
        let outcomes = try driver.run([.write(address(0x50), [0, 0x40, 0x99]), .write(address(0x48), [7]), .read(address(0x50), 1)])
        #expect(outcomes.map(\.status) == [ok, err, err])
        #expect(outcomes[2].data == [0xcc])
        #expect(bus.withLock { eeprom.contents(at: 0x40, count: 1) } == [0x99])
        #expect(bus.withLock { eeprom.pointer } == 0x41)
        #expect(bus.withLock { sensor.pointer } == .temperature)
    }

    @Test("a transaction naming a refused address fails whole before any of it runs")
    func refusedAddressFailsTheWholeTransaction() throws {
        let path = temporaryPath("whole")
        defer { unlink(path) }
        let (bus, eeprom, _) = try standardBus(eepromFile: path)
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        let outcomes = try driver.run([.write(address(0x50), [0, 0x10, 0x77]), .read(address(0x33), 1), .read(address(0x50), 1)])
        #expect(outcomes.map(\.status) == [err, err, err])
        #expect(bus.withLock { eeprom.contents(at: 0x10, count: 1) } == [0xff])
        // The queue goes on.
        #expect(try driver.run([.write(address(0x50), [0, 0x10]), .read(address(0x50), 1)]).map(\.status) == [ok, ok])
    }

    @Test("a transaction whose requests arrive over several turns runs once its last request is there")
    func transactionAcrossTurns() throws {
        let path = temporaryPath("turns")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let harness = try GroupHarness(device: I2CDevice(bus: bus))
        let driver = I2CTestDriver(harness: harness)
        let first = driver.submit(field: address(0x48).virtioField, flags: VirtioI2C.Flag.failNext, write: [2])
        harness.run()
        #expect(harness.queue(0).takeUsed().isEmpty)
        let second = driver.submit(field: address(0x48).virtioField, flags: VirtioI2C.Flag.read, readLength: 2)
        let outcomes = try driver.outcomes([first, second])
        #expect(outcomes.map(\.status) == [ok, ok])
        #expect(outcomes[1].data == [0x4b, 0x00])
    }

    @Test("a transaction left unfinished when the queue stops fails")
    func unfinishedTransactionFailsAtStop() throws {
        let path = temporaryPath("stop")
        defer { unlink(path) }
        let (bus, _, _) = try standardBus(eepromFile: path)
        let harness = try GroupHarness(device: I2CDevice(bus: bus))
        let driver = I2CTestDriver(harness: harness)
        let held = driver.submit(field: address(0x48).virtioField, flags: VirtioI2C.Flag.failNext, write: [2])
        harness.run()
        #expect(harness.queue(0).takeUsed().isEmpty)
        harness.finish()
        let used = harness.queue(0).takeUsed()
        #expect(used.map(\.id) == [UInt32(held.head)] && used.map(\.length) == [1])
        #expect(harness.memory.read(held.status, count: 1) == [err])
    }

    @Test("10-bit addresses reach 10-bit clients only; the 7-bit address of the same number is another client")
    func tenBitAddresses() throws {
        let tenBit = I2CAddress(tenBit: 0x123)!
        #expect(I2CAddress(virtioField: tenBit.virtioField) == tenBit)
        #expect(tenBit.virtioField == 0x23f2)
        #expect(I2CAddress(virtioField: 0x00a0) == address(0x50))
        #expect(I2CAddress(virtioField: 0x0150) == nil)   // 7-bit with a high byte
        let sensor = TemperatureSensor(SensorConfiguration(address: tenBit, celsius: -10))
        let low = TemperatureSensor(SensorConfiguration(address: I2CAddress(tenBit: 0x048)!, celsius: 30))
        let bus = try I2CBus(clients: [sensor, low], adapters: [])
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        #expect(try driver.run(.read(tenBit, 2)).data == [0xf6, 0x00])
        #expect(try driver.run(.read(I2CAddress(tenBit: 0x048)!, 2)).data == [0x1e, 0x00])
        #expect(try driver.run(.read(address(0x48), 2)).status == err)
        #expect(try driver.run(.read(I2CAddress(tenBit: 0x124)!, 2)).status == err)
        #expect(bus.reachableAddresses == [I2CAddress(tenBit: 0x048)!, tenBit])
    }
}
