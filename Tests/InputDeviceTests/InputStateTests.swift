import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// DEVICE_STATE for virtio-input: undelivered whole batches, the LEDs and the config selection move to
/// another daemon through the fake front-end's pipe; hostile states are refused with nothing changed.
@Suite struct InputStateTests {
    static let keyA: UInt16 = 30, keyB: UInt16 = 48, ledCapsLock: UInt16 = 1

    /// A keyboard whose driver offered no buffers while the host pressed and released A (two whole
    /// batches) and began pressing B (no SYN_REPORT yet); the driver turned Caps Lock on and selected
    /// the name in the config space. Returns its saved state.
    static func savedSource() throws -> [UInt8] {
        let bench = try InputBench()
        bench.send([key(keyA, 1), .synReport, key(keyA, 0), .synReport, key(keyB, 1)])
        bench.status(InputEvent(type: EventType.led, code: ledCapsLock, value: 1).bytes)
        bench.turn()
        try bench.device.writeConfig(offset: 0, bytes: [InputConfigSpace.Select.idName, 0])
        bench.harness.finish()
        return try #require(try bench.device.saveState()).encoded()
    }

    static func fixture() throws -> DeviceFixture<InputDevice> {
        let (deviceEnd, _) = try socketPair()
        return try DeviceFixture(InputDevice(description: SyntheticKind.keyboard.description(), source: .evdev(deviceEnd),
                                             bufferEvents: 1024, maxBatch: 64), queueSizes: [16, 16])
    }

    @Test func pendingBatchesLedsAndConfigMoveToAnotherDaemon() throws {
        let bytes = try Self.savedSource()
        let b = try Self.fixture()
        #expect(try b.frontend.loadDeviceState(bytes) == 0)
        #expect(try b.frontend.saveDeviceState().bytes == bytes)
        #expect(b.device.readConfig(offset: 0, count: 3) == [InputConfigSpace.Select.idName, 0, UInt8(SyntheticKind.keyboard.description().name.utf8.count)])
        // The driver on the new daemon gets the two whole batches, not the half-made one.
        let buffers = (0..<6).map { _ in b.memory.allocate(InputEvent.size) }
        var heads: [UInt16: UInt64] = [:]
        for address in buffers { heads[b.queues[0].submit([.writable(address, InputEvent.size)])] = address }
        b.queues[0].notifyDevice()
        let used = try b.queues[0].waitForUsed(4)
        let events = used.map { InputEvent(packed: b.memory.read(heads[UInt16($0.id)]!, count: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) }
        #expect(events == [key(Self.keyA, 1), .synReport, key(Self.keyA, 0), .synReport])
        #expect((try? b.queues[0].waitForUsed(1, timeoutMilliseconds: 200)) == nil)
    }

    @Test func hostileStatesAreRefusedWithNothingChanged() throws {
        let good = try Self.savedSource()
        let b = try Self.fixture()
        let before = try b.frontend.saveDeviceState().bytes
        var hostile = try hostileDeviceStates(of: good)
        let payload = try DeviceState(decoding: good).payload
        var open = payload
        open.replaceSubrange(open.count - 8..<open.count, with: withUnsafeBytes(of: key(Self.keyB, 1).packed.littleEndian, Array.init))
        hostile.append(("events not ending with SYN_REPORT", DeviceState(kind: "inpt", version: 1, payload: open).encoded()))
        var leds = payload
        leds[4] = 0xff; leds[5] = 0xff; leds[6] = 0xff
        hostile.append(("LEDs beyond LED_MAX", DeviceState(kind: "inpt", version: 1, payload: leds).encoded()))
        var many = payload
        many.replaceSubrange(6..<10, with: [0xff, 0xff, 0xff, 0x7f])
        hostile.append(("a hostile event count", DeviceState(kind: "inpt", version: 1, payload: many).encoded()))
        for (what, bytes) in hostile {
            #expect(try b.frontend.loadDeviceState(bytes) != 0, "\(what) was accepted")
            #expect(try b.frontend.saveDeviceState().bytes == before, "\(what) changed the device")
        }
    }
}
