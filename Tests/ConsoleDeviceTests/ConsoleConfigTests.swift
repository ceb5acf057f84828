import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The config space (cols, rows, max_nr_ports, emerg_wr) and EMERG_WRITE.
@Suite("Console config space")
struct ConsoleConfigTests {
    static func device(logPath: String, size: ConsoleSize = ConsoleSize(cols: 132, rows: 43)) throws -> ConsoleDevice {
        var options = ConsoleDevice.Options()
        options.initialSize = size
        options.maxPorts = 3
        return try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: logPath)))], options: options)
    }

    @Test("the device offers SIZE, MULTIPORT and EMERG_WRITE, 2 × (max_nr_ports + 1) queues in one group")
    func features() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let device = try Self.device(logPath: path)
        #expect(device.deviceFeatures == 0b111)
        #expect(device.virtioDeviceID == 3)
        #expect(device.configSize == 12)
        #expect(device.queueCount == 8)
        #expect(device.queueGroups == [Array(0..<8)])
    }

    @Test("reads at every offset and length give the matching slice; reads outside are an error and zeros")
    func readsAtEveryOffset() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let device = try Self.device(logPath: path)
        let whole: [UInt8] = [132, 0, 43, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        #expect(device.readConfig(offset: 0, count: 12) == whole)
        for offset in 0...12 {
            for count in 0...(12 - offset) {
                #expect(device.readConfig(offset: offset, count: count) == Array(whole[offset..<(offset + count)]))
            }
        }
        #expect(device.recentErrors.isEmpty)
        #expect(device.readConfig(offset: 10, count: 4) == [0, 0, 0, 0])
        #expect(device.readConfig(offset: 13, count: 1) == [0])
        #expect(device.recentErrors.count == 2)
    }

    @Test("config reads through a front-end at every offset; the daemon keeps serving")
    func readsThroughFrontend() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let fixture = try DeviceFixture(try Self.device(logPath: path), queueSizes: [16, 16, 16, 16, 16, 16, 16, 16])
        defer { fixture.daemon.stop() }
        for offset in 0..<12 {
            let reply = try fixture.frontend.getConfig(offset: offset, count: 12 - offset)
            #expect(reply.data == Array(fixture.device.config[offset...]))
        }
        #expect(try fixture.frontend.getFeatures() & 0b111 == 0b111)
    }

    @Test("EMERG_WRITE: a write of emerg_wr puts its character on port 0's output, in order with the guest's")
    func emergencyWrite() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let driver = try ConsoleDriver(Self.device(logPath: path))
        defer { driver.harness.finish() }
        driver.transmit(port: 0, Array("panic: ".utf8))
        for c in "oops\n".utf8 { try driver.device.writeConfig(offset: 8, bytes: [c, 0, 0, 0]) }
        driver.run()
        let log = open(path, O_RDONLY)
        defer { close(log) }
        #expect(driver.turn { lseek(log, 0, SEEK_END) == 12 })
        lseek(log, 0, SEEK_SET)
        #expect(readFile(log) == Array("panic: oops\n".utf8))
    }

    @Test("writes elsewhere in the config space are refused with an error")
    func readOnlyFields() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let device = try Self.device(logPath: path)
        for offset in 0..<12 where offset != 8 {
            #expect(throws: DeviceError.readOnlyConfig) { try device.writeConfig(offset: offset, bytes: [1]) }
        }
        #expect(throws: DeviceError.readOnlyConfig) { try device.writeConfig(offset: 8, bytes: [1, 2, 3, 4, 5]) }
        #expect(throws: DeviceError.readOnlyConfig) { try device.writeConfig(offset: 8, bytes: []) }
        #expect(device.recentErrors.count == 13)
        #expect(device.readConfig(offset: 0, count: 4) == [132, 0, 43, 0])
    }

    @Test("the emergency backlog is bounded while no group runs")
    func emergencyBacklogBounded() throws {
        let path = temporaryPath("log")
        defer { unlink(path) }
        let device = try Self.device(logPath: path)
        for _ in 0..<4097 { try device.writeConfig(offset: 8, bytes: [0x41]) }
        #expect(device.recentErrors.count == 1)
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        let log = open(path, O_RDONLY)
        defer { close(log) }
        #expect(readFile(log).count == 4096)
    }
}
