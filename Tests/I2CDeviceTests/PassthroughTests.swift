import CI2C
import I2CDevice
import Testing
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A host adapter that records what the passthrough asks of it and answers as told.
final class RecordingAdapter: HostAdapter, @unchecked Sendable {
    struct Transfer: Equatable {
        var address: I2CAddress
        var isRead: Bool
        var bytes: [UInt8]
    }

    let functionality: UInt64
    var transfers: [[Transfer]] = []
    var smbusCalls: [(address: I2CAddress, isRead: Bool, command: UInt8, type: SMBusTransferType, block: [UInt8])] = []
    /// What reads return, byte after byte.
    var readData: [UInt8] = []
    var failWith: Int32 = 0

    init(functionality: UInt64) { self.functionality = functionality }

    func transfer(_ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Int32 {
        var recorded: [Transfer] = []
        for m in messages {
            if m.isRead && !readData.isEmpty { for i in 0..<m.data.count { m.data[i] = readData[i % readData.count] } }
            recorded.append(Transfer(address: m.address, isRead: m.isRead, bytes: m.isRead ? [] : Array(m.data)))
        }
        transfers.append(recorded)
        return failWith
    }

    func smbus(_ transfer: inout SMBusTransfer) -> Int32 {
        let block = withUnsafeBytes(of: transfer.data.block) { Array($0) }
        smbusCalls.append((transfer.address, transfer.isRead, transfer.command, transfer.type, block))
        if transfer.isRead && failWith == 0 {
            switch transfer.type {
            case .byte, .byteData: transfer.data.byte = readData[0]
            case .wordData: transfer.data.word = UInt16(readData[0]) | UInt16(readData[1]) << 8
            case .i2cBlockData:
                withUnsafeMutableBytes(of: &transfer.data.block) { b in
                    for i in stride(from: 1, through: min(32, Int(b[0])), by: 1) { b[i] = readData[(i - 1) % readData.count] }
                }
            case .quick, .blockData: break
            }
        }
        return failWith
    }
}

let plainI2C = UInt64(I2C_FUNC_I2C) | UInt64(I2C_FUNC_10BIT_ADDR)
/// What i2c-stub offers: SMBus only, no plain I2C.
let smbusOnly = UInt64(I2C_FUNC_SMBUS_QUICK) | UInt64(I2C_FUNC_SMBUS_BYTE) | UInt64(I2C_FUNC_SMBUS_BYTE_DATA)
    | UInt64(I2C_FUNC_SMBUS_WORD_DATA) | UInt64(I2C_FUNC_SMBUS_BLOCK_DATA) | UInt64(I2C_FUNC_SMBUS_I2C_BLOCK)

@Suite("host passthrough")
struct PassthroughTests {
    private func bench(_ adapter: RecordingAdapter, addresses: [I2CAddress] = [address(0x50), address(0x51)]) throws -> I2CTestDriver {
        let bus = try I2CBus(clients: [], adapters: [(adapter, addresses)])
        return I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
    }

    @Test("an adapter that does plain I2C gets a FAIL_NEXT chain as one I2C_RDWR transaction, reads delivered")
    func combinedTransaction() throws {
        let adapter = RecordingAdapter(functionality: plainI2C)
        adapter.readData = [0xa5, 0x5a, 0x01]
        let driver = try bench(adapter)
        let outcomes = try driver.run([.write(address(0x50), [0x00, 0x10]), .read(address(0x50), 3)])
        #expect(outcomes.map(\.status) == [ok, ok])
        #expect(outcomes[1].data == [0xa5, 0x5a, 0x01])
        #expect(adapter.transfers == [[.init(address: address(0x50), isRead: false, bytes: [0x00, 0x10]),
                                       .init(address: address(0x50), isRead: true, bytes: [])]])
    }

    @Test("an I2C_RDWR that fails on the host fails every message of the transaction")
    func hostFailureFailsAll() throws {
        let adapter = RecordingAdapter(functionality: plainI2C)
        adapter.failWith = ENXIO
        let driver = try bench(adapter)
        #expect(try driver.run([.write(address(0x51), [1]), .read(address(0x51), 1)]).map(\.status) == [err, err])
        #expect(adapter.transfers.count == 1)
    }

    @Test("only the listed addresses reach the host: the others never become a transfer")
    func unlistedAddressesNeverReachTheHost() throws {
        let adapter = RecordingAdapter(functionality: plainI2C)
        adapter.readData = [0]
        let driver = try bench(adapter)
        var found: [UInt16] = []
        for a in UInt16(0x03)...0x77 where try driver.run(.write(address(a), [])).status == ok { found.append(a) }
        #expect(found == [0x50, 0x51])
        #expect(adapter.transfers.map { $0[0].address } == [address(0x50), address(0x51)])
        #expect(try driver.run([.write(address(0x50), [0]), .read(address(0x52), 1)]).map(\.status) == [err, err])
        #expect(adapter.transfers.count == 2)
    }

    @Test("a 10-bit client goes to I2C_RDWR with its 10-bit address")
    func tenBitPassthrough() throws {
        let adapter = RecordingAdapter(functionality: plainI2C)
        let driver = try bench(adapter, addresses: [I2CAddress(tenBit: 0x2a5)!])
        #expect(try driver.run(.write(I2CAddress(tenBit: 0x2a5)!, [9])).status == ok)
        #expect(adapter.transfers == [[.init(address: I2CAddress(tenBit: 0x2a5)!, isRead: false, bytes: [9])]])
        #expect(try driver.run(.write(address(0x25), [9])).status == err)
    }

    @Test("an SMBus-only adapter gets the SMBus transfer with the same bytes on the wire, for every shape")
    func smbusTranslation() throws {
        let adapter = RecordingAdapter(functionality: smbusOnly)
        adapter.readData = [0x34, 0x12, 0x56]
        let driver = try bench(adapter)
        let a = address(0x50)
        #expect(try driver.run(.write(a, [])).status == ok)
        #expect(try driver.run(.read(a, 0)).status == ok)
        #expect(try driver.run(.write(a, [0x07])).status == ok)
        #expect(try driver.run(.read(a, 1)).data == [0x34])
        #expect(try driver.run(.write(a, [0x07, 0x99])).status == ok)
        #expect(try driver.run(.write(a, [0x07, 0x99, 0x88])).status == ok)
        #expect(try driver.run(.write(a, [0x07, 1, 2, 3, 4, 5])).status == ok)
        #expect(try driver.run([.write(a, [0x08]), .read(a, 1)])[1].data == [0x34])
        #expect(try driver.run([.write(a, [0x08]), .read(a, 2)])[1].data == [0x34, 0x12])
        #expect(try driver.run([.write(a, [0x08]), .read(a, 5)])[1].data == [0x34, 0x12, 0x56, 0x34, 0x12])
        let calls = adapter.smbusCalls
        #expect(calls.map(\.type) == [.quick, .quick, .byte, .byte, .byteData, .wordData, .i2cBlockData, .byteData, .wordData, .i2cBlockData])
        #expect(calls.map(\.isRead) == [false, true, false, true, false, false, false, true, true, true])
        #expect(calls.map(\.command) == [0, 0, 0x07, 0, 0x07, 0x07, 0x07, 0x08, 0x08, 0x08])
        #expect(Array(calls[6].block[0...5]) == [5, 1, 2, 3, 4, 5])
        #expect(calls[9].block[0] == 5)
    }

    @Test("a transaction with no SMBus form fails without reaching the adapter", arguments: [
        [Message.write(address(0x50), [1, 2]), .write(address(0x50), [3])],   // two writes
        [.write(address(0x50), [1, 2]), .read(address(0x50), 1)],              // a two-byte command
        [.write(address(0x50), [1]), .read(address(0x51), 1)],                 // two clients
        [.read(address(0x50), 2)],                                             // a bare two-byte read
        [.write(address(0x50), [1]), .read(address(0x50), 33)],                // beyond an SMBus block
    ])
    func noSMBusForm(messages: [Message]) throws {
        let adapter = RecordingAdapter(functionality: smbusOnly)
        adapter.readData = [1, 2]
        let driver = try bench(adapter)
        #expect(try driver.run(messages).allSatisfy { $0.status == err })
        #expect(adapter.smbusCalls.isEmpty)
    }

    @Test("a transaction that spans a host adapter and a simulated client is refused whole")
    func acrossBackends() throws {
        let adapter = RecordingAdapter(functionality: plainI2C)
        let path = temporaryPath("across")
        defer { unlink(path) }
        let eeprom = try EEPROM(EEPROMConfiguration(address: address(0x57), size: 256, file: path))
        let bus = try I2CBus(clients: [eeprom], adapters: [(adapter, [address(0x50)])])
        let driver = I2CTestDriver(harness: try GroupHarness(device: I2CDevice(bus: bus)))
        #expect(try driver.run([.write(address(0x57), [0, 1]), .write(address(0x50), [1])]).map(\.status) == [err, err])
        #expect(adapter.transfers.isEmpty)
        #expect(eeprom.contents(at: 0, count: 1) == [0xff])
    }
}

extension Message: CustomTestStringConvertible {
    var testDescription: String {
        switch self {
        case let .write(a, b): "w\(b.count)@\(a)"
        case let .read(a, n): "r\(n)@\(a)"
        }
    }
}
