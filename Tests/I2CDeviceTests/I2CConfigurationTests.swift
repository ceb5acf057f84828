import Foundation
import I2CDevice
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("vhost-user-i2c command-line configuration")
struct I2CConfigurationTests {
    @Test("--device-list: an adapter by number or name, then 7-bit and 10-bit addresses")
    func deviceList() throws {
        let byNumber = try I2CConfiguration.parsePassthrough("1:0x50,0x51,0x123/10")
        #expect(byNumber.adapter == .number(1))
        #expect(byNumber.addresses == [address(0x50), address(0x51), I2CAddress(tenBit: 0x123)!])
        let byName = try I2CConfiguration.parsePassthrough("SMBus I801 adapter at f040:72")
        #expect(byName.adapter == .name("SMBus I801 adapter at f040"))
        #expect(byName.addresses == [address(72)])
        for bad in ["0x50", "1:", "1:0x80", "1:0x50,", ":0x50", "1:0x400/10", "1:0x50/9"] {
            #expect(throws: I2CConfigurationError.self, "\(bad)") { try I2CConfiguration.parsePassthrough(bad) }
        }
    }

    @Test("--eeprom and --sensor: fields, defaults, and clear errors")
    func simulatedClients() throws {
        let e = try I2CConfiguration.parseEEPROM("addr=0x50,size=8192,file=/tmp/x")
        #expect(e == EEPROMConfiguration(address: address(0x50), size: 8192, pageSize: 32, file: "/tmp/x"))
        #expect(try I2CConfiguration.parseEEPROM("addr=0x54,size=256,page=16,file=/tmp/y").pageSize == 16)
        for bad in ["size=256,file=/tmp/x", "addr=0x50", "addr=0x50,size=300,file=/x", "addr=0x50,page=3,file=/x",
                    "addr=0x50,file=/x,colour=red", "addr=0x50,addr=0x51,file=/x", "addr=0x7f,size=1024,file=/x"] {
            #expect(throws: I2CConfigurationError.self, "\(bad)") { try I2CConfiguration.parseEEPROM(bad) }
        }
        #expect(try I2CConfiguration.parseSensor("addr=0x48,temp=-12.5") == SensorConfiguration(address: address(0x48), celsius: -12.5))
        #expect(try I2CConfiguration.parseSensor("addr=0x49").celsius == 21.5)
        for bad in ["temp=20", "addr=0x48,temp=200", "addr=0x48,temp=warm"] {
            #expect(throws: I2CConfigurationError.self, "\(bad)") { try I2CConfiguration.parseSensor(bad) }
        }
    }

    @Test("an address claimed twice is refused; an adapter is found by its sysfs name")
    func busAssembly() throws {
        var configuration = I2CConfiguration()
        configuration.sensors = [SensorConfiguration(address: address(0x48)), SensorConfiguration(address: address(0x48))]
        #expect(throws: I2CConfigurationError.self) { try I2CBus.make(configuration) }

        let sysfs = temporaryPath("sysfs")
        for (n, name) in [(0, "i915 gmbus dpc"), (3, "SMBus stub driver"), (7, "SMBus I801 adapter at f040")] {
            mkdir(sysfs, 0o755)
            mkdir("\(sysfs)/i2c-\(n)", 0o755)
            let fd = open("\(sysfs)/i2c-\(n)/name", O_CREAT | O_WRONLY, 0o644)
            _ = write(fd, name + "\n", name.utf8.count + 1)
            close(fd)
        }
        defer { try? FileManager.default.removeItem(atPath: sysfs) }
        #expect(try I2CConfiguration.AdapterName.name("SMBus stub driver").resolve(sysfs: sysfs) == 3)
        #expect(try I2CConfiguration.AdapterName.number(5).resolve(sysfs: sysfs) == 5)
        #expect(throws: I2CConfigurationError.self) { try I2CConfiguration.AdapterName.name("SMBus stub").resolve(sysfs: sysfs) }

        // The passthrough opens the adapter it resolved, and refuses 10-bit clients it cannot reach.
        configuration = I2CConfiguration()
        configuration.passthrough = [try I2CConfiguration.parsePassthrough("SMBus stub driver:0x50,0x3a0/10")]
        var opened: [Int] = []
        #expect(throws: I2CConfigurationError.self) {
            try I2CBus.make(configuration, sysfs: sysfs) { n in opened.append(n); return RecordingAdapter(functionality: smbusOnly) }
        }
        #expect(opened == [3])
        configuration.passthrough = [try I2CConfiguration.parsePassthrough("7:0x50,0x3a0/10")]
        let bus = try I2CBus.make(configuration, sysfs: sysfs) { _ in RecordingAdapter(functionality: plainI2C) }
        #expect(bus.reachableAddresses == [address(0x50), I2CAddress(tenBit: 0x3a0)!])
    }
}
