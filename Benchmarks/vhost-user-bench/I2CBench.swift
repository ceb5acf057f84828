// vhost-user-bench i2c: EEPROM random reads (a write of the word address, then a read of N bytes, one
// FAIL_NEXT transaction as Linux's at24 driver makes them) through the daemon, against the same
// transactions run on the same simulated bus in-process.
import BenchmarkSupport
import I2CDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A 4 KiB EEPROM at 0x50 on a memfd-backed file in /dev/shm.
func benchBus() throws -> (I2CBus, String) {
    let path = "/dev/shm/vhu-i2c-bench-\(getpid()).bin"
    let eeprom = try EEPROM(EEPROMConfiguration(address: I2CAddress(sevenBit: 0x50)!, size: 4096, pageSize: 32, file: path))
    return (try I2CBus(clients: [eeprom], adapters: []), path)
}

/// Transactions per second through the whole vhost-user path: `depth` transactions submitted, the
/// kick, the daemon's worker runs them, the driver collects all used elements, and again.
func i2cThroughDaemon(seconds: Double, length: Int, depth: Int) throws -> Double {
    let (bus, path) = try benchBus()
    defer { unlink(path) }
    let fixture = try DeviceFixture(I2CDevice(bus: bus), queueSizes: [max(16, (6 * depth).nextPowerOfTwo)])
    defer { fixture.daemon.stop() }
    let memory = fixture.memory, q = fixture.queue
    let writeHeader = memory.allocate(8), readHeader = memory.allocate(8), word = memory.allocate(2)
    memory.write([0xa0, 0, 0, 0, 1, 0, 0, 0], at: writeHeader)   // 0x50, FAIL_NEXT
    memory.write([0xa0, 0, 0, 0, 2, 0, 0, 0], at: readHeader)    // 0x50, M_RD
    memory.write([0x01, 0x00], at: word)
    let slots = (0..<depth).map { _ in (data: memory.allocate(length), statuses: memory.allocate(2)) }
    var transactions = 0
    let start = now()
    while now() - start < seconds {
        for s in slots {
            q.submit([.readable(writeHeader, 8), .readable(word, 2), .writable(s.statuses, 1)])
            q.submit([.readable(readHeader, 8), .writable(s.data, length), .writable(s.statuses + 1, 1)])
        }
        q.notifyDevice()
        _ = try q.waitForUsed(2 * depth)
        guard memory.read(slots[0].statuses, count: 2) == [0, 0] else { throw I2CBenchError.failed }
        transactions += depth
    }
    return Double(transactions) / (now() - start)
}

/// The reference: the same transactions on the same bus, called directly (no rings, no threads).
func i2cDirect(seconds: Double, length: Int) throws -> Double {
    let (bus, path) = try benchBus()
    defer { unlink(path) }
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: length + 2, alignment: 16)
    defer { scratch.deallocate() }
    scratch[0] = 0x01
    scratch[1] = 0x00
    let messages = UnsafeMutableBufferPointer<I2CMessage>.allocate(capacity: 2)
    defer { messages.deallocate() }
    let address = I2CAddress(sevenBit: 0x50)!
    messages[0] = I2CMessage(address: address, isRead: false, data: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<2]))
    messages[1] = I2CMessage(address: address, isRead: true, data: UnsafeMutableRawBufferPointer(rebasing: scratch[2...]))
    var transactions = 0
    let start = now()
    while now() - start < seconds {
        for _ in 0..<256 where bus.execute(messages) == 2 { transactions += 1 }
    }
    return Double(transactions) / (now() - start)
}

enum I2CBenchError: Error { case failed }

func runI2CBench(_ a: Arguments) throws {
    let seconds = a.double("seconds", 3), length = a.int("length", 32), depth = a.int("depth", 8)
    let reference = try i2cDirect(seconds: seconds, length: length)
    let ours = try i2cThroughDaemon(seconds: seconds, length: length, depth: depth)
    print("i2c: EEPROM random reads of \(length) B (write of the word address + read, one transaction), depth \(depth), \(seconds) s each")
    print("  simulated bus called in-process: \(fixed(reference / 1e3, 1)) k transactions/s")
    print("  vhost-user-i2c via fake VMM:     \(fixed(ours / 1e3, 1)) k transactions/s")
    print("  ratio vhost-user/in-process: \(fixed(ours / reference, 3))")
}
