import I2CDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// One I2C message as a test writes it.
enum Message: Sendable {
    case write(I2CAddress, [UInt8])
    case read(I2CAddress, Int)
}

/// What the device answered to one request.
struct Outcome: Equatable {
    var status: UInt8
    /// A read's data (empty for writes).
    var data: [UInt8]
    var usedLength: UInt32
}

/// The driver side of a virtio-i2c queue, laid out as Linux's i2c-virtio does: per request an out_hdr,
/// the buffer (if any) and the in_hdr, each in a descriptor of its own; a transaction's requests chained
/// with FAIL_NEXT. Works over a `GroupHarness` (synchronous) or a `DeviceFixture` (a daemon).
struct I2CTestDriver {
    let memory: FakeGuestMemory
    let queue: FakeQueue
    /// Lets the device run until `count` used elements arrived, and returns them.
    let collect: (Int) throws -> [UsedElement]

    init(harness: GroupHarness) {
        memory = harness.memory
        queue = harness.queue(0)
        let q = queue
        collect = { _ in harness.run(); return q.takeUsed() }
    }

    init<D>(fixture: DeviceFixture<D>) {
        memory = fixture.memory
        queue = fixture.queue
        let q = queue
        collect = { count in q.notifyDevice(); return try q.waitForUsed(count) }
    }

    struct Submitted {
        var head: UInt16
        var status: UInt64
        var data: UInt64
        var readLength: Int
    }

    /// Lays out one request; `field` and `flags` exactly as given.
    func submit(field: UInt16, flags: UInt32, write: [UInt8] = [], readLength: Int = 0) -> Submitted {
        let header = memory.allocate(8), status = memory.allocate(1)
        withUnsafeBytes(of: field.littleEndian) { memory.write(Array($0), at: header) }
        memory.write([0, 0], at: header + 2)
        withUnsafeBytes(of: flags.littleEndian) { memory.write(Array($0), at: header + 4) }
        memory.write([0xee], at: status)
        var buffers: [BufferSpec] = [.readable(header, 8)]
        var data: UInt64 = 0
        if !write.isEmpty {
            data = memory.allocate(write.count)
            memory.write(write, at: data)
            buffers.append(.readable(data, write.count))
        } else if readLength > 0 {
            data = memory.allocate(readLength)
            memory.write([UInt8](repeating: 0xcc, count: readLength), at: data)
            buffers.append(.writable(data, readLength))
        }
        buffers.append(.writable(status, 1))
        let head = queue.submit(buffers)
        return Submitted(head: head, status: status, data: data, readLength: readLength)
    }

    /// Sends `messages` as one transaction and returns each request's outcome, in order.
    func run(_ messages: [Message]) throws -> [Outcome] {
        let submitted = messages.enumerated().map { i, m in
            let flags = (i < messages.count - 1 ? VirtioI2C.Flag.failNext : 0)
            switch m {
            case let .write(a, bytes): return submit(field: a.virtioField, flags: flags, write: bytes)
            case let .read(a, n): return submit(field: a.virtioField, flags: flags | VirtioI2C.Flag.read, readLength: n)
            }
        }
        return try outcomes(submitted)
    }

    /// Collects the outcomes of requests submitted earlier.
    func outcomes(_ submitted: [Submitted]) throws -> [Outcome] {
        let used = try collect(submitted.count)
        return submitted.map { s in
            let length = used.first { $0.id == UInt32(s.head) }?.length ?? UInt32.max
            return Outcome(status: memory.read(s.status, count: 1)[0],
                           data: s.readLength > 0 ? memory.read(s.data, count: s.readLength) : [],
                           usedLength: length)
        }
    }

    /// One message alone.
    func run(_ message: Message) throws -> Outcome { try run([message])[0] }
}

let ok = VirtioI2C.Status.ok
let err = VirtioI2C.Status.error

func address(_ value: UInt16) -> I2CAddress { I2CAddress(sevenBit: value)! }

/// A fresh path for an EEPROM's file, removed by the caller.
func temporaryPath(_ name: String) -> String {
    "/tmp/vhu-i2c-\(getpid())-\(name)-\(UInt64.random(in: 0...UInt64.max))"
}

/// The bytes of a file.
func fileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 1 << 17)
    let n = read(fd, &bytes, bytes.count)
    return Array(bytes[0..<max(0, n)])
}

/// A bus of one 4 KiB EEPROM (page 32) at 0x50 and a sensor at 0x48 reading 21.5 °C.
func standardBus(eepromFile: String, extra: [any SimulatedClient] = []) throws -> (I2CBus, EEPROM, TemperatureSensor) {
    let eeprom = try EEPROM(EEPROMConfiguration(address: address(0x50), size: 4096, pageSize: 32, file: eepromFile))
    let sensor = TemperatureSensor(SensorConfiguration(address: address(0x48), celsius: 21.5))
    return (try I2CBus(clients: [eeprom, sensor] + extra, adapters: []), eeprom, sensor)
}
