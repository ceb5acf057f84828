import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// Device state: the connection table moves; its connections are reset on the loading side.
@Suite("vsock device state")
struct VsockStateTests {
    /// A device with two established connections (one stream, one seqpacket), its group stopped.
    static func deviceWithConnections() throws -> (VsockDevice, String, [OwnedDescriptor]) {
        let path = temporaryPath()
        let device = try VsockDevice(guestCID: 3, host: HostSockets(path: path))
        let stream = try listenHost(path, port: 6300)
        let seq = try listenHost(path, port: 6301, type: Int32(SOCK_SEQPACKET.rawValue))
        let driver = try VsockDriver(device)
        driver.send(.request, port: 1, to: 6300)
        driver.send(.request, port: 2, to: 6301, type: .seqpacket)
        var log: [Packet] = []
        _ = try #require(driver.expect(.response, port: 1, log: &log))
        _ = try #require(driver.expect(.response, port: 2, log: &log))
        driver.harness.finish()
        return (device, path, [stream, seq])
    }

    @Test("Round trip: the loading device resets each saved connection towards the guest")
    func roundTrip() throws {
        let (device, path, _) = try Self.deviceWithConnections()
        defer { removeSockets(path, ports: [6300, 6301]) }
        let state = try #require(try device.saveState())
        #expect(state.kind == "vsck" && state.version == 1)
        let target = try VsockDevice(guestCID: 3, host: nil)
        try target.loadState(state)
        #expect(try target.saveState()?.payload.count == state.payload.count)  // kept until the guest hears of it
        let driver = try VsockDriver(target)
        defer { driver.harness.finish() }
        #expect(driver.events() == [VirtioVsock.eventTransportReset])
        var log: [Packet] = []
        let first = driver.expect(.rst, port: 1, log: &log)
        let second = driver.expect(.rst, port: 2, log: &log)
        #expect(first?.header.srcPort == 6300 && second?.header.srcPort == 6301)
        #expect(second?.header.type == VirtioVsock.SocketType.seqpacket.rawValue)
    }

    @Test("Corrupted, truncated, trailing, wrong-version, wrong-kind and wrong-CID states are refused, the device unchanged")
    func refused() throws {
        let (device, path, _) = try Self.deviceWithConnections()
        defer { removeSockets(path, ports: [6300, 6301]) }
        let state = try #require(try device.saveState())
        let target = try VsockDevice(guestCID: 3, host: nil)
        let before = try #require(try target.saveState())
        var bad: [DeviceState] = []
        bad.append(DeviceState(kind: state.kind, version: state.version, payload: Array(state.payload.dropLast())))
        bad.append(DeviceState(kind: state.kind, version: state.version, payload: state.payload + [0]))
        bad.append(DeviceState(kind: state.kind, version: 2, payload: state.payload))
        bad.append(DeviceState(kind: "blk0", version: 1, payload: state.payload))
        var otherCID = state.payload; otherCID[0] = 4
        bad.append(DeviceState(kind: state.kind, version: 1, payload: otherCID))
        var badType = state.payload; badType[8 + 4 + 4 + 16] = 9   // the first entry's type
        bad.append(DeviceState(kind: state.kind, version: 1, payload: badType))
        var badCount = state.payload; badCount[12] = 0xff; badCount[13] = 0xff
        bad.append(DeviceState(kind: state.kind, version: 1, payload: badCount))
        for (i, candidate) in bad.enumerated() {
            #expect(throws: DeviceStateError.self, "case \(i)") { try target.loadState(candidate) }
            #expect(try target.saveState() == before, "case \(i)")
        }
        // And the checksummed encoding catches a flipped bit before the device sees it.
        var encoded = state.encoded()
        encoded[encoded.count / 2] ^= 1
        #expect(throws: DeviceStateError.self) { try DeviceState(decoding: encoded) }
    }
}
