import Testing
import VhostUserKit
import VhostUserTesting
@testable import SoundDevice

private typealias B = SoundTestBench

@Suite("virtio-snd device state: round trip, and refusals that change nothing")
struct SoundStateTests {
    /// A device with stream 0 prepared (S32 mono), volume 30, stream 1 muted, jack 1 remapped.
    static func configured() throws -> SoundTestBench {
        let bench = try SoundTestBench()
        #expect(bench.setParams(stream: 0, buffer: 4096, period: 512, channels: 1, format: .s32) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        #expect(bench.status(B.le(B.Code.ctlWrite.rawValue) + B.le(UInt32(0)) + B.le(UInt32(30)) + [UInt8](repeating: 0, count: 508)) == B.ok)
        #expect(bench.status(B.le(B.Code.ctlWrite.rawValue) + B.le(UInt32(3)) + B.le(UInt32(0)) + [UInt8](repeating: 0, count: 508)) == B.ok)
        #expect(bench.status(B.le(B.Code.jackRemap.rawValue) + B.le(UInt32(1)) + B.le(UInt32(5)) + B.le(UInt32(6))) == B.ok)
        bench.harness.finish()  // the state goes back to the device, as when every queue stops
        return bench
    }

    @Test("save, then load into a fresh device: parameters, states, control values and jacks are back")
    func roundTrip() throws {
        let saved = try #require(try Self.configured().device.saveState())
        let fresh = SoundDevice(streams: B.defaultStreams, backend: NullBackend())
        try fresh.loadState(DeviceState(decoding: saved.encoded()))
        #expect(try fresh.saveState() == saved)
        let status = fresh.status(ofStream: 0)
        #expect(status.state == .prepared && status.volume == 30)
        #expect(status.parameters == PCMParameters(bufferBytes: 4096, periodBytes: 512, channels: 1, format: .s32, rate: 48000))
        #expect(!fresh.status(ofStream: 1).soundOn)
        // The loaded device serves: the prepared stream starts.
        let harness = try GroupHarness(device: fresh, queueSize: 16)
        let request = B.le(B.Code.pcmStart.rawValue) + B.le(UInt32(0))
        let r = harness.memory.allocate(8), s = harness.memory.allocate(4)
        harness.memory.write(request, at: r)
        harness.queue(0).submit([.readable(r, 8), .writable(s, 4)])
        harness.run()
        #expect(harness.memory.read(s, count: 4) == B.le(B.ok))
        harness.finish()
    }

    @Test("truncated, corrupted, wrong-version, wrong-kind and inconsistent states are refused; the device is unchanged")
    func refusals() throws {
        let bench = try Self.configured()
        let saved = try #require(try bench.device.saveState())
        let target = SoundDevice(streams: B.defaultStreams, backend: NullBackend())
        let before = try #require(try target.saveState())
        var truncated = saved; truncated.payload.removeLast(3)
        var trailing = saved; trailing.payload.append(0)
        var badState = saved; badState.payload[4] = 9
        var badVolume = saved
        // Stream 0: state(1) hasParams(1) params(14) → volume at 4 + 16.
        badVolume.payload.replaceSubrange(20..<24, with: B.le(UInt32(101)))
        var badFormat = saved; badFormat.payload[4 + 2 + 9] = 4  // U8: not offered by stream 0
        let wrongVersion = DeviceState(kind: saved.kind, version: 2, payload: saved.payload)
        let wrongKind = DeviceState(kind: "blk0", version: 1, payload: saved.payload)
        for state in [truncated, trailing, badState, badVolume, badFormat, wrongVersion, wrongKind] {
            #expect(throws: DeviceStateError.self) { try target.loadState(state) }
            #expect(try target.saveState() == before)
        }
        var corrupted = saved.encoded()
        corrupted[corrupted.count - 2] ^= 0x40
        #expect(throws: DeviceStateError.self) { try DeviceState(decoding: corrupted) }
        let otherTopology = SoundDevice(streams: [B.defaultStreams[0]], backend: NullBackend())
        #expect(throws: DeviceStateError.self) { try otherTopology.loadState(saved) }
    }
}
