import GPIODevice
import Testing
import VhostUserKit
import VhostUserTesting

/// DEVICE_STATE for virtio-gpio, through the fake front-end and the real pipe: line directions,
/// output values, interrupt triggers and latched edges move to another daemon; hostile states are
/// refused with nothing changed.
@Suite struct GPIOStateTests {
    typealias T = GPIOTestBench
    static func fixture() throws -> DeviceFixture<GPIODevice> {
        try DeviceFixture(GPIODevice(chip: try SimulatedChip(layout: T.defaultLayout)), queueSizes: [16, 16])
    }

    /// One request on the fixture's requestq: (status, value).
    @discardableResult
    static func request(_ f: DeviceFixture<GPIODevice>, _ type: UInt16, line: UInt16, value: UInt32 = 0) throws -> (UInt8, UInt8) {
        let header = T.header(type, line: line, value: value)
        let r = f.memory.allocate(header.count), response = f.memory.allocate(2)
        f.memory.write(header, at: r)
        f.queues[0].submit([.readable(r, header.count), .writable(response, 2)])
        f.queues[0].notifyDevice()
        _ = try f.queues[0].waitForUsed(1)
        let bytes = f.memory.read(response, count: 2)
        return (bytes[0], bytes[1])
    }

    /// Line 0 drives line 1 (loopback): line 1 is an input with a rising-edge interrupt and, as line 0
    /// went high with no eventq buffer queued, an edge latched; line 2 is a low output, line 5 an input
    /// with a level-high interrupt.
    static func configured() throws -> DeviceFixture<GPIODevice> {
        let f = try fixture()
        try request(f, T.requestType.setDirection, line: 1, value: 2)
        try request(f, T.requestType.setIRQType, line: 1, value: 1)
        try request(f, T.requestType.setValue, line: 0, value: 1)
        try request(f, T.requestType.setDirection, line: 0, value: 1)
        try request(f, T.requestType.setDirection, line: 2, value: 1)
        try request(f, T.requestType.setDirection, line: 5, value: 2)
        try request(f, T.requestType.setIRQType, line: 5, value: 4)
        return f
    }

    @Test func linesAndInterruptsMoveToAnotherDaemon() throws {
        let a = try Self.configured()
        let (bytes, check) = try a.frontend.saveDeviceState()
        #expect(check == 0)
        let b = try Self.fixture()
        #expect(try b.frontend.loadDeviceState(bytes) == 0)
        #expect(try b.frontend.saveDeviceState().bytes == bytes)
        // The driver on the new daemon sees the same lines...
        #expect(try Self.request(b, T.requestType.getDirection, line: 0) == (T.ok, 1))
        #expect(try Self.request(b, T.requestType.getValue, line: 0) == (T.ok, 1))
        #expect(try Self.request(b, T.requestType.getValue, line: 1) == (T.ok, 1))
        #expect(try Self.request(b, T.requestType.getDirection, line: 2) == (T.ok, 1))
        #expect(try Self.request(b, T.requestType.getDirection, line: 5) == (T.ok, 2))
        // ...the triggers (a change needs NONE first, so changing one fails)...
        #expect(try Self.request(b, T.requestType.setIRQType, line: 5, value: 1).0 == T.error)
        // ...and the latched edge: line 1's first eventq buffer fires at once.
        let status = b.memory.allocate(1), req = b.memory.allocate(2)
        b.memory.write([1, 0], at: req)
        b.queues[1].submit([.readable(req, 2), .writable(status, 1)])
        b.queues[1].notifyDevice()
        #expect(try b.queues[1].waitForUsed(1).count == 1)
        #expect(b.memory.read(status, count: 1) == [T.valid])
    }

    @Test func hostileStatesAreRefusedWithNothingChanged() throws {
        let good = try Self.configured().frontend.saveDeviceState().bytes
        let b = try Self.fixture()
        try Self.request(b, T.requestType.setDirection, line: 3, value: 1)
        let before = try b.frontend.saveDeviceState().bytes
        var hostile = try hostileDeviceStates(of: good)
        var w = ByteWriter()
        w.u32(7)
        hostile.append(("another line count", DeviceState(kind: "gpio", version: 1, payload: w.bytes).encoded()))
        let state = try DeviceState(decoding: good)
        var payload = state.payload
        payload[4 + 7 * 4] = 2  // line 7, which this host keeps, claimed as a free input
        hostile.append(("a line the host keeps", DeviceState(kind: "gpio", version: 1, payload: payload).encoded()))
        payload = state.payload
        payload[4 + 2 * 4 + 2] = 9  // line 2: no such trigger
        hostile.append(("a bad trigger", DeviceState(kind: "gpio", version: 1, payload: payload).encoded()))
        payload = state.payload
        payload[4 + 2 * 4 + 2] = 1  // line 2 is an output: no interrupt possible
        hostile.append(("an interrupt on an output", DeviceState(kind: "gpio", version: 1, payload: payload).encoded()))
        for (what, bytes) in hostile {
            #expect(try b.frontend.loadDeviceState(bytes) != 0, "\(what) was accepted")
            #expect(try b.frontend.saveDeviceState().bytes == before, "\(what) changed the device")
        }
        #expect(try Self.request(b, T.requestType.getDirection, line: 3) == (T.ok, 1))
    }
}
