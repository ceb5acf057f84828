import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// The config space (virtio 1.2, 5.8.4) through the front-end's GET_CONFIG/SET_CONFIG, as QEMU relays
/// the driver's accesses: select and subsel written, size and the union read.
@Suite("virtio-input config space")
struct ConfigSpaceTests {
    /// A device served by an in-process daemon, with a front-end that reads config as the driver does.
    final class ConfigBench {
        let fixture: DeviceFixture<InputDevice>
        init(_ description: InputDeviceDescription) throws {
            fixture = try DeviceFixture(InputDevice(description: description, source: .none), queueSizes: [16, 16])
        }
        deinit { fixture.daemon.stop() }

        /// Writes select and subsel (acked) and returns size and that many bytes of the union.
        func select(_ select: UInt8, _ subsel: UInt8 = 0) throws -> [UInt8] {
            #expect(try fixture.frontend.setConfig(offset: 0, bytes: [select, subsel]) == 0)
            let size = Int(try fixture.frontend.getConfig(offset: 2, count: 1).data[0])
            return try fixture.frontend.getConfig(offset: 8, count: 128).data.prefix(size).map { $0 }
        }
    }

    typealias Select = InputConfigSpace.Select

    @Test("ID_NAME, ID_SERIAL and ID_DEVIDS of a synthetic tablet")
    func identity() throws {
        let bench = try ConfigBench(SyntheticKind.tablet.description(name: "host tablet"))
        #expect(try bench.select(Select.idName) == Array("host tablet".utf8))
        #expect(try bench.select(Select.idSerial) == Array("vhost-user-input-tablet".utf8))
        // bustype BUS_VIRTUAL, vendor 0x1af4, product 0x102, version 1, each le16.
        #expect(try bench.select(Select.idDevids) == [0x06, 0, 0xf4, 0x1a, 0x02, 0x01, 1, 0])
    }

    @Test("EV_BITS per event type (subsel = type): the codes as a bitmap up to its last set byte; none for others")
    func eventBits() throws {
        let bench = try ConfigBench(SyntheticKind.mouse.description())
        // REL_X, REL_Y, REL_HWHEEL, REL_WHEEL: bits 0, 1, 6, 8.
        #expect(try bench.select(Select.evBits, UInt8(EventType.rel)) == [0b0100_0011, 0b1])
        // BTN_LEFT ... BTN_EXTRA: 0x110-0x114, byte 34.
        let keys = try bench.select(Select.evBits, UInt8(EventType.key))
        #expect(keys.count == 35 && keys[34] == 0b1_1111 && keys.prefix(34).allSatisfy { $0 == 0 })
        #expect(try bench.select(Select.evBits, UInt8(EventType.abs)) == [])
        #expect(try bench.select(Select.evBits, UInt8(EventType.led)) == [])
        #expect(try bench.select(Select.evBits, 0) == [])
    }

    @Test("PROP_BITS: POINTER for the mouse, DIRECT for the touchscreen")
    func propertyBits() throws {
        #expect(try ConfigBench(SyntheticKind.mouse.description()).select(Select.propBits) == [0b01])
        #expect(try ConfigBench(SyntheticKind.touch.description()).select(Select.propBits) == [0b10])
        #expect(try ConfigBench(SyntheticKind.keyboard.description()).select(Select.propBits) == [])
    }

    @Test("ABS_INFO per axis: min, max, fuzz, flat, res as le32; nothing for an axis the device lacks")
    func absInfo() throws {
        let bench = try ConfigBench(SyntheticKind.touch.description())
        let range = try bench.select(Select.absInfo, UInt8(Axis.x))
        #expect(range == le32([0, 32767, 0, 0, 0]))
        #expect(try bench.select(Select.absInfo, UInt8(Axis.mtSlot)) == le32([0, 9, 0, 0, 0]))
        #expect(try bench.select(Select.absInfo, 0x18) == [])   // ABS_PRESSURE: not declared
        #expect(try bench.select(Select.absInfo, 0xff) == [])
    }

    @Test("a recorded touchpad (its ioctl answers) becomes the same config the real device would give")
    func recordedTouchpad() throws {
        let description = try InputDeviceDescription(querying: RecordedTouchpad())
        #expect(description.name == "SynPS/2 Synaptics TouchPad")
        #expect(description.properties == [InputProperty.pointer, 2])  // INPUT_PROP_BUTTONPAD
        let bench = try ConfigBench(description)
        #expect(try bench.select(Select.idName) == Array("SynPS/2 Synaptics TouchPad".utf8))
        #expect(try bench.select(Select.idSerial) == [])
        #expect(try bench.select(Select.idDevids) == [0x11, 0, 0x02, 0, 0x07, 0, 0xb1, 0x01])
        #expect(try bench.select(Select.propBits) == [0b101])
        #expect(try bench.select(Select.evBits, UInt8(EventType.key)) == Array(RecordedTouchpad.keyBits.prefix(0x14f / 8 + 1)))
        #expect(try bench.select(Select.evBits, UInt8(EventType.abs)) == Array(RecordedTouchpad.absBits.prefix(8)))
        #expect(try bench.select(Select.absInfo, UInt8(Axis.x)) == le32([1472, 5470, 0, 0, 60]))
        #expect(try bench.select(Select.absInfo, UInt8(Axis.y)) == le32([1408, 4498, 0, 0, 85]))
        #expect(try bench.select(Select.absInfo, 0x18) == le32([0, 255, 0, 0, 0]))
        #expect(try bench.select(Select.absInfo, UInt8(Axis.mtTrackingID)) == le32([0, 65535, 0, 0, 0]))
        #expect(try bench.select(Select.evBits, UInt8(EventType.rel)) == [])
    }

    @Test("every offset of every select reads back consistently: header, size, union, zeros beyond size")
    func everyOffset() throws {
        let bench = try ConfigBench(SyntheticKind.keyboard.description())
        for select: UInt8 in [0, 1, 2, 3, 0x10, 0x11, 0x12, 0x13, 0xff] {
            for subsel: UInt8 in [0, 1, 0x11, 0xff] {
                #expect(try bench.fixture.frontend.setConfig(offset: 0, bytes: [select, subsel]) == 0)
                let whole = try bench.fixture.frontend.getConfig(offset: 0, count: InputConfigSpace.size).data
                #expect(whole.count == 136 && whole[0] == select && whole[1] == subsel)
                #expect(whole[3..<8].allSatisfy { $0 == 0 })
                #expect(whole[(8 + Int(whole[2]))...].allSatisfy { $0 == 0 })
                for offset in 0..<InputConfigSpace.size {
                    #expect(try bench.fixture.frontend.getConfig(offset: offset, count: 1).data == [whole[offset]])
                }
            }
        }
    }

    @Test("select and subsel may be written one byte at a time; a write covering neither is refused (nothing changes)")
    func writes() throws {
        let bench = try ConfigBench(SyntheticKind.keyboard.description())
        let frontend = bench.fixture.frontend
        #expect(try frontend.setConfig(offset: 0, bytes: [Select.evBits]) == 0)
        #expect(try frontend.setConfig(offset: 1, bytes: [UInt8(EventType.led)]) == 0)
        #expect(try frontend.getConfig(offset: 0, count: 9).data == [Select.evBits, UInt8(EventType.led), 1, 0, 0, 0, 0, 0, 0b111])
        for (offset, bytes) in [(2, [9]), (3, [0]), (8, [1, 2, 3, 4]), (135, [1])] as [(Int, [UInt8])] {
            #expect(try frontend.setConfig(offset: offset, bytes: bytes) != 0)
        }
        #expect(try frontend.getConfig(offset: 0, count: 9).data == [Select.evBits, UInt8(EventType.led), 1, 0, 0, 0, 0, 0, 0b111])
    }

    @Test("a write of the whole config space (what QEMU sends) sets select and subsel and ignores the read-only rest")
    func wholeConfigWrite() throws {
        let bench = try ConfigBench(SyntheticKind.tablet.description())
        let frontend = bench.fixture.frontend
        var stale = [UInt8](repeating: 0xee, count: InputConfigSpace.size)
        (stale[0], stale[1]) = (Select.absInfo, UInt8(Axis.y))
        #expect(try frontend.setConfig(offset: 0, bytes: stale) == 0)
        #expect(try frontend.getConfig(offset: 0, count: 28).data == [Select.absInfo, 1, 20, 0, 0, 0, 0, 0] + le32([0, 32767, 0, 0, 0]))
        // subsel and the size byte: subsel taken, size ignored.
        #expect(try frontend.setConfig(offset: 1, bytes: [0, 99]) == 0)
        #expect(try frontend.getConfig(offset: 0, count: 3).data == [Select.absInfo, 0, 20])
        #expect(try bench.select(Select.idName) == Array("vhost-user tablet".utf8))
    }

    @Test("a long name is cut to the union's 128 bytes")
    func longName() throws {
        let bench = try ConfigBench(SyntheticKind.keyboard.description(name: String(repeating: "n", count: 300)))
        #expect(try bench.select(Select.idName) == [UInt8](repeating: UInt8(ascii: "n"), count: 128))
    }
}

func le32(_ values: [Int32]) -> [UInt8] {
    values.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
}

/// The answers a Synaptics touchpad gave to the evdev ioctls (recorded on a laptop): what
/// `InputDeviceDescription(querying:)` asks a real device, without the device.
struct RecordedTouchpad: EvdevQueries {
    static let keyBits: [UInt8] = {
        var bits = [UInt8](repeating: 0, count: 96)
        // BTN_LEFT, BTN_TOOL_FINGER, BTN_TOOL_QUINTTAP (0x148), BTN_TOUCH, BTN_TOOL_DOUBLETAP, _TRIPLETAP, _QUADTAP (0x14f).
        for code in [0x110, 0x145, 0x148, 0x14a, 0x14d, 0x14e, 0x14f] { bits[code / 8] |= 1 << (code % 8) }
        return bits
    }()
    static let absBits: [UInt8] = {
        var bits = [UInt8](repeating: 0, count: 8)
        for code in [0x00, 0x01, 0x18, 0x2f, 0x35, 0x36, 0x39] { bits[code / 8] |= 1 << (code % 8) }
        return bits
    }()

    func name() throws(SystemError) -> String { "SynPS/2 Synaptics TouchPad" }
    func uniq() throws(SystemError) -> String { throw SystemError("EVIOCGUNIQ", errno: 2) }
    func ids() throws(SystemError) -> InputDeviceDescription.DeviceIDs { .init(bustype: 0x11, vendor: 2, product: 7, version: 0x1b1) }
    func propertyBits() throws(SystemError) -> [UInt8] { [0b101, 0, 0, 0] }
    func bits(type: UInt16) throws(SystemError) -> [UInt8] {
        switch type {
        case 0: [0b1011, 0, 0, 0]  // EV_SYN, EV_KEY, EV_ABS
        case EventType.key: Self.keyBits
        case EventType.abs: Self.absBits
        default: [UInt8](repeating: 0, count: 8)
        }
    }
    func absInfo(axis: UInt16) throws(SystemError) -> InputDeviceDescription.AbsInfo {
        switch axis {
        case 0x00, 0x35: .init(min: 1472, max: 5470, res: 60)
        case 0x01, 0x36: .init(min: 1408, max: 4498, res: 85)
        case 0x18: .init(min: 0, max: 255)
        case 0x2f: .init(min: 0, max: 1)
        case 0x39: .init(min: 0, max: 65535)
        default: throw SystemError("EVIOCGABS", errno: 22)
        }
    }
}
