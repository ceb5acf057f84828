import I2CDevice
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The simulated parts called directly, as the bus calls them: AT24 address pointer rules and LM75 registers.
@Suite("simulated AT24 EEPROM and LM75 sensor")
struct SimulatedClientTests {
    private func write(_ client: any SimulatedClient, _ bytes: [UInt8], block: Int = 0) -> Bool {
        bytes.withUnsafeBytes { client.write($0, block: block) }
    }

    private func read(_ client: any SimulatedClient, _ count: Int, block: Int = 0) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        return out.withUnsafeMutableBytes { client.read(into: $0, block: block) } ? out : nil
    }

    @Test("a page write wraps around within its page, never into the next one")
    func pageWriteWraps() throws {
        let path = temporaryPath("wrap")
        defer { unlink(path) }
        let e = try EEPROM(EEPROMConfiguration(address: address(0x50), size: 4096, pageSize: 32, file: path))
        #expect(write(e, [0x00, 0x1e, 1, 2, 3, 4]))
        #expect(e.contents(at: 0x1e, count: 2) == [1, 2])
        #expect(e.contents(at: 0x00, count: 2) == [3, 4])
        #expect(e.contents(at: 0x20, count: 2) == [0xff, 0xff])
        #expect(e.pointer == 0x02)
        // The file holds the same bytes.
        let file = fileBytes(path)
        #expect(file.count == 4096)
        #expect(Array(file[0x1e...0x1f]) == [1, 2] && Array(file[0...1]) == [3, 4])
    }

    @Test("a read runs on across pages from the pointer and wraps at the end of the memory")
    func sequentialReadAcrossPages() throws {
        let path = temporaryPath("seq")
        defer { unlink(path) }
        let e = try EEPROM(EEPROMConfiguration(address: address(0x50), size: 4096, pageSize: 32, file: path))
        #expect(write(e, [0x00, 0x1f, 0xa1]))
        #expect(write(e, [0x00, 0x20, 0xb2]))
        #expect(write(e, [0x00, 0x1f]))
        #expect(read(e, 3) == [0xa1, 0xb2, 0xff])
        #expect(e.pointer == 0x22)
        #expect(write(e, [0x0f, 0xff, 0xc3]))
        #expect(write(e, [0x0f, 0xfe]))
        #expect(read(e, 4) == [0xff, 0xc3, 0xff, 0xff])
        #expect(e.pointer == 2)
    }

    @Test("parts up to 2 KiB take one address byte and select 256-byte blocks with their client address")
    func oneByteAddressingWithBlocks() throws {
        let path = temporaryPath("24c08")
        defer { unlink(path) }
        let config = EEPROMConfiguration(address: address(0x50), size: 1024, pageSize: 16, file: path)
        #expect(config.addresses == [address(0x50), address(0x51), address(0x52), address(0x53)])
        #expect(config.addressBytes == 1)
        let e = try EEPROM(config)
        #expect(write(e, [0x10, 7, 8], block: 2))
        #expect(e.contents(at: 0x210, count: 2) == [7, 8])
        #expect(write(e, [0x10], block: 2))
        #expect(read(e, 2) == [7, 8])
        // A write shorter than the word address of a two-byte part is refused.
        let path2 = temporaryPath("24c32")
        defer { unlink(path2) }
        let big = try EEPROM(EEPROMConfiguration(address: address(0x57), size: 4096, file: path2))
        #expect(!write(big, [0x01]))
        #expect(write(big, []))
    }

    @Test("the contents persist in the file; a file of another size is refused")
    func contentsPersist() throws {
        let path = temporaryPath("persist")
        defer { unlink(path) }
        let config = EEPROMConfiguration(address: address(0x50), size: 256, file: path)
        do {
            let e = try EEPROM(config)
            #expect(write(e, [0x40, 0xde, 0xad]))
        }
        let again = try EEPROM(config)
        #expect(write(again, [0x40]))
        #expect(read(again, 2) == [0xde, 0xad])
        var bigger = config
        bigger.size = 512
        #expect(throws: EEPROMError.self) { try EEPROM(bigger) }
    }

    @Test("the sensor's temperature, configuration, THYST and TOS registers through the pointer")
    func sensorRegisters() {
        let s = TemperatureSensor(SensorConfiguration(address: address(0x48), celsius: 21.5))
        #expect(read(s, 2) == [0x15, 0x80])       // 21.5 °C: 43 half degrees in bits 15:7
        #expect(read(s, 4) == [0x15, 0x80, 0x15, 0x80])
        #expect(write(s, [1]))
        #expect(read(s, 1) == [0x00])
        #expect(write(s, [1, 0x02]))
        #expect(read(s, 2) == [0x02, 0x02])
        #expect(write(s, [2]))
        #expect(read(s, 2) == [0x4b, 0x00])        // THYST 75 °C
        #expect(write(s, [3, 0x32, 0xff]))         // TOS 50.5 °C; the low 7 bits do not exist
        #expect(read(s, 2) == [0x32, 0x80])
        #expect(TemperatureSensor.decode(s.overTemperature) == 50.5)
        // Refused: a pointer beyond the four registers, data for the read-only temperature, too much data.
        #expect(!write(s, [4]))
        #expect(!write(s, [0, 0x10]))
        #expect(!write(s, [1, 1, 1]))
        #expect(!write(s, [3, 0x50]))
        #expect(TemperatureSensor.encode(celsius: -25) == 0xe700)
    }
}
