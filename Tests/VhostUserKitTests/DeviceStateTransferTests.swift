import Testing
import VhostUserKit
import VhostUserTesting

/// DEVICE_STATE through the real pipe: SET_DEVICE_STATE_FD, the stream, CHECK_DEVICE_STATE.
extension KitTests {
    @Suite("Device state transfer") struct DeviceStateTransferTests {
        /// A source device with non-default config and a blob larger than a pipe's buffer.
        static func source() throws -> DeviceFixture<LoopbackDevice> {
            let f = try DeviceFixture(LoopbackDevice())
            _ = try f.frontend.setConfig(offset: 8, bytes: [1, 2, 3, 4, 5, 6, 7, 8])
            f.device.blob.withLock { $0 = pattern(300_000, seed: 5) }
            return f
        }

        @Test("a state larger than the pipe moves from one daemon to another; the rings go on")
        func roundTrip() throws {
            let a = try Self.source()
            for q in 0..<1 { _ = try a.frontend.getVringBase(q) }
            let (bytes, check) = try a.frontend.saveDeviceState()
            #expect(check == 0)
            #expect(try DeviceState(decoding: bytes).kind == LoopbackDevice.stateKind)

            let b = try DeviceFixture(LoopbackDevice())
            #expect(try b.frontend.loadDeviceState(bytes) == 0)
            #expect(b.device.blob.withLock { $0 } == pattern(300_000, seed: 5))
            #expect(b.device.readConfig(offset: 0, count: 16) == a.device.readConfig(offset: 0, count: 16))
            try expectEcho(b.queue)
        }

        @Test("corrupted, truncated, wrong-kind and wrong-version streams are refused with the device unchanged")
        func hostileStreamsRefused() throws {
            let a = try Self.source()
            let good = try a.frontend.saveDeviceState().bytes
            let hostile = try hostileDeviceStates(of: good).map(\.bytes) + [[UInt8](repeating: 0xee, count: 100_000)]
            let b = try DeviceFixture(LoopbackDevice())
            b.device.blob.withLock { $0 = [9, 9, 9] }
            for stream in hostile {
                #expect(try b.frontend.loadDeviceState(stream) != 0)
                #expect(b.device.blob.withLock { $0 } == [9, 9, 9])
                #expect(b.device.readConfig(offset: 0, count: 16) == LoopbackDevice.defaultConfig)
            }
            try expectEcho(b.queue)
        }

        @Test("a device without state sends an empty stream and accepts one, but refuses a state")
        func statelessDevice() throws {
            let f = try DeviceFixture(AsyncLoopbackDevice(batch: 1))
            let (bytes, check) = try f.frontend.saveDeviceState()
            #expect(bytes.isEmpty && check == 0)
            #expect(try f.frontend.loadDeviceState([]) == 0)
            #expect(try f.frontend.loadDeviceState(DeviceState(kind: "loop", version: 1, payload: []).encoded()) != 0)
        }

        @Test("bad transfer parameters, a missing pipe and a CHECK without a transfer are refused")
        func badRequests() throws {
            let f = try DeviceFixture(LoopbackDevice())
            let (_, w) = try pipePair()
            #expect(try f.frontend.setDeviceStateFd(direction: 2, pipe: w) & 0xff != 0)
            #expect(try f.frontend.setDeviceStateFd(direction: 0, phase: 1, pipe: w) & 0xff != 0)
            try f.frontend.send(.setDeviceStateFd, payload: DeviceStateTransferParameters(direction: 0, phase: 0).encoded())
            #expect(try U64Payload(decoding: try f.frontend.receiveReply(to: .setDeviceStateFd).payload, for: .setDeviceStateFd).value & 0xff != 0)
            #expect(try f.frontend.checkDeviceState() != 0)
            try expectEcho(f.queue)
        }

        @Test("a transfer the front-end abandons (pipe never closed) neither blocks a new transfer nor the next connection")
        func abandonedTransfers() throws {
            let f = try DeviceFixture(LoopbackDevice())
            f.device.blob.withLock { $0 = [7, 7] }
            let (stalledRead, stalledWrite) = try pipePair()
            #expect(try f.frontend.setDeviceStateFd(direction: 1, pipe: stalledRead) & 0xff == 0)
            // A second transfer drops the first at once and works.
            let start = nowMilliseconds()
            let (bytes, check) = try f.frontend.saveDeviceState()
            #expect(check == 0 && nowMilliseconds() - start < 2000)
            #expect(try LoopbackDevice().stateRoundTrip(bytes) == [7, 7])
            // Left pending at a disconnect (a state larger than the pipe, nobody reading), it does not hold up the daemon.
            f.device.blob.withLock { $0 = pattern(300_000) }
            let (stalledRead2, stalledWrite2) = try pipePair()
            #expect(try f.frontend.setDeviceStateFd(direction: 0, pipe: stalledWrite2) & 0xff == 0)
            let again = nowMilliseconds()
            try expectFreshConnectionServed(after: f)
            #expect(nowMilliseconds() - again < 2000)
            withExtendedLifetime((stalledWrite, stalledRead2)) {}
        }
    }
}
