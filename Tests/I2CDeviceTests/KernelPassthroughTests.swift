import Foundation
import I2CDevice
import Testing
import VhostUserTesting

/// The passthrough against a real kernel adapter: i2c-stub (an SMBus-only adapter with a register
/// file at chip_addr) through i2c-dev, where the host kernel has both modules.
@Suite("host passthrough on a real kernel adapter (i2c-stub)", .serialized)
struct KernelPassthroughTests {
    /// Whether this host can load i2c-stub and i2c-dev (root, and both modules present).
    static let stubAvailable: Bool = getuid() == 0 && run(["/sbin/modprobe", "-n", "i2c-stub"]) && run(["/sbin/modprobe", "-n", "i2c-dev"])

    static func run(_ arguments: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    @Test("byte, word and I2C block transfers reach the stub's registers and read back; other addresses are refused",
          .enabled(if: stubAvailable, "this host's kernel has no i2c-stub or i2c-dev module (modprobe -n i2c-stub), or the tests do not run as root"))
    func stubRegisters() throws {
        try #require(Self.run(["/sbin/modprobe", "i2c-stub", "chip_addr=0x50"]) && Self.run(["/sbin/modprobe", "i2c-dev"]))
        defer { _ = Self.run(["/sbin/modprobe", "-r", "i2c-stub"]) }
        let number = try I2CConfiguration.AdapterName.name("SMBus stub driver").resolve()
        let adapter = try DevI2CAdapter(number: number)
        #expect(adapter.functionality & UInt64(HostFunctionalityBits.plainI2C) == 0)
        let bus = try I2CBus(clients: [], adapters: [(adapter, [address(0x50)])])
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        let a = address(0x50)
        #expect(try driver.run(.write(a, [0x10, 0xab])).status == ok)
        #expect(try driver.run([.write(a, [0x10]), .read(a, 1)])[1].data == [0xab])
        #expect(try driver.run(.write(a, [0x20, 0x34, 0x12])).status == ok)
        #expect(try driver.run([.write(a, [0x20]), .read(a, 2)])[1].data == [0x34, 0x12])
        #expect(try driver.run(.write(a, [0x40, 1, 2, 3, 4, 5, 6])).status == ok)
        #expect(try driver.run([.write(a, [0x40]), .read(a, 6)])[1].data == [1, 2, 3, 4, 5, 6])
        #expect(try driver.run(.write(a, [])).status == ok)
        #expect(try driver.run(.write(address(0x51), [])).status == err)
    }
}

/// I2C_FUNC_I2C, for the check above.
enum HostFunctionalityBits {
    static let plainI2C: UInt32 = 0x0000_0001
}
