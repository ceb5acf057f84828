import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

extension KitTests {
    /// What the protocol hands to the device beyond its queues: the driver's status, device-specific
    /// requests, and a back-end channel a queue worker can use without waiting.
    @Suite("Device hooks")
    struct DeviceHookTests {
        @Test("SET_STATUS reaches the device, in order, and GET_STATUS reads it back")
        func statusReachesDevice() throws {
            let d = try DeviceFixture(LoopbackDevice(), profile: nil)
            let (device, f) = (d.device, d.frontend)
            try f.setProtocolFeatures(try f.getProtocolFeatures())
            for status: UInt64 in [0x1, 0x3, 0xb, 0xf, 0] { try expectAck(f, .setStatus, U64Payload(status).encoded()) }
            #expect(device.state.withLock { $0.statuses } == [0x1, 0x3, 0xb, 0xf, 0])
            try expectNack(f, .setStatus, U64Payload(0x100).encoded())
            #expect(device.state.withLock { $0.statuses.count } == 5, "a refused status does not reach the device")
            #expect(try f.getStatus() == 0)
        }

        @Test("a device-specific request number reaches the device, which replies; one it refuses is nacked")
        func deviceSpecificRequests() throws {
            let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
            try f.setProtocolFeatures(try f.getProtocolFeatures())
            try sendRaw(f, request: LoopbackDevice.reverseRequest, payload: [1, 2, 3, 4])
            let reply = try #require(try receiveAny(f))
            #expect(reply.header.request == LoopbackDevice.reverseRequest && reply.header.flags.contains(.reply))
            #expect(reply.payload == [4, 3, 2, 1])

            // Refused by the device, and unknown to both: a failure ack each, and the session goes on.
            for request in [LoopbackDevice.refusedRequest, 1002] {
                try sendRaw(f, request: request, flags: 1 | MessageHeader.Flags.needReply.rawValue, payload: [9])
                let ack = try #require(try receiveAny(f))
                #expect(ack.header.request == request)
                #expect(try U64Payload(decoding: ack.payload, for: .setStatus).value != 0)
            }
            // A known request the kit leaves to devices, which this one does not serve.
            try expectNack(f, .netSetMtu, U64Payload(1500).encoded())
            try barrier(f)
        }

        @Test("a queue worker posts on the back-end channel without waiting; the control thread sends it")
        func workerPostsConfigChange() throws {
            let d = try DeviceFixture(LoopbackDevice())
            let backend = MessageChannel(socket: try #require(d.backendSocket))
            var payload = pattern(16)
            payload[0] = LoopbackDevice.postConfigChangeByte
            try expectEcho(d.queue, payload)
            #expect(waitReadable(backend.socket.rawValue, timeoutMilliseconds: 5000))
            let m = try #require(try backend.receive())
            #expect(m.header.request == BackendRequest.configChangeMsg.rawValue && m.payload.isEmpty)
            try expectEcho(d.queue)
        }
    }
}
