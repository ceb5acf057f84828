import Testing
import VhostUserKit
import VhostUserTesting
@testable import SoundDevice

private typealias B = SoundTestBench

@Suite("virtio-snd PCM: parameters, the state machine, paced transfers both ways, events")
struct SoundStreamTests {
    @Test("SET_PARAMS accepts exactly what the stream offers and refuses the rest with NOT_SUPP")
    func parameterValidation() throws {
        let bench = try SoundTestBench()
        #expect(bench.setParams(stream: 0) == B.ok)
        #expect(bench.setParams(stream: 0, channels: 1, format: .s32) == B.ok)
        #expect(bench.setParams(stream: 0, channels: 3) == B.notSupported)
        #expect(bench.setParams(stream: 0, channels: 0) == B.notSupported)
        #expect(bench.setParams(stream: 0, format: .u8) == B.notSupported)
        #expect(bench.setParams(stream: 0, format: .float) == B.notSupported)
        #expect(bench.setParams(stream: 0, rate: 6) == B.notSupported)  // 44100: not configured
        #expect(bench.setParams(stream: 0, rate: 14) == B.notSupported)  // no such rate
        #expect(bench.setParams(stream: 0, format: .imaADPCM) == B.notSupported)
        #expect(bench.setParams(stream: 0, buffer: 1 << 20) == B.notSupported)  // past buffer=64-65536
        #expect(bench.setParams(stream: 0, buffer: 1024, period: 2048) == B.notSupported)
        #expect(bench.setParams(stream: 0, buffer: 4096, period: 1022) == B.notSupported)  // not whole frames
        #expect(bench.setParams(stream: 0, features: 1) == B.notSupported)
        #expect(bench.setParams(stream: 2) == B.badMessage)
        #expect(bench.setParams(stream: 1, buffer: 800, period: 80, channels: 1, format: .u8, rate: 1) == B.ok)
        #expect(bench.device.status(ofStream: 1).parameters == PCMParameters(bufferBytes: 800, periodBytes: 80, channels: 1, format: .u8, rate: 8000))
    }

    @Test("the state machine: SET_PARAMS, PREPARE, START, STOP, RELEASE in order; out of order BAD_MSG")
    func stateMachine() throws {
        let bench = try SoundTestBench()
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmRelease, stream: 0) == B.badMessage)
        #expect(bench.setParams(stream: 0) == B.ok)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmStop, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmStop, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
        #expect(bench.device.status(ofStream: 0).state == .running)
        #expect(bench.setParams(stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmRelease, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmStop, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmStop, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmRelease, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmRelease, stream: 0) == B.badMessage)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        #expect(bench.pcm(.pcmStart, stream: 9) == B.badMessage)
    }

    @Test("PREPARE answers IO_ERR when the host side cannot open")
    func prepareFailure() throws {
        let backend = RecordingBackend()
        backend.failOpen = true
        let bench = try SoundTestBench(backend: backend)
        #expect(bench.setParams(stream: 0) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ioError)
        backend.failOpen = false
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
    }

    /// 48 kHz stereo S16, 480-frame periods: 10 ms each.
    static let period10ms: UInt32 = 480 * 4

    @Test("playback: buffers complete one period apart on the monotonic clock (within 5 ms per period, no drift), in order, with the samples handed to the host and a truthful latency")
    func playbackPacing() throws {
        let backend = RecordingBackend()
        let bench = try SoundTestBench(backend: backend, memoryBytes: 8 << 20, periodEvents: false)
        #expect(bench.setParams(stream: 0, buffer: Self.period10ms * 8, period: Self.period10ms) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        let periods = 10
        var buffers: [(head: UInt16, status: UInt64)] = []
        for n in 0..<periods {
            buffers.append(bench.play(stream: 0, [UInt8](repeating: UInt8(n), count: Int(Self.period10ms)), run: false))
        }
        bench.harness.run()
        #expect(bench.harness.queue(VirtioSound.txQueue).takeUsed().isEmpty)  // held, not completed on arrival
        let start = monotonicNanoseconds()
        #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
        let used = bench.waitUsed(VirtioSound.txQueue, count: periods)
        #expect(used.map(\.used.id) == buffers.map { UInt32($0.head) })
        for (n, completion) in used.enumerated() {
            let ideal = start + UInt64(n + 1) * 10_000_000
            #expect(completion.at + 1_000_000 >= ideal, "period \(n) completed early")
            #expect(completion.at <= ideal + 5_000_000, "period \(n) completed \((completion.at - ideal) / 1000) µs late")
            #expect(completion.used.length == 8)
            let (status, latency) = bench.transferStatus(buffers[n].status)
            #expect(status == B.ok && latency == UInt32((periods - n - 1) * Int(Self.period10ms)))
        }
        let played = backend.endpoints[0]!.played
        #expect(played.count >= periods * Int(Self.period10ms))
        #expect((0..<periods).allSatisfy { n in played[n * Int(Self.period10ms)] == UInt8(n) })
        #expect(bench.device.status(ofStream: 0).underruns == 0 || played.count > periods * Int(Self.period10ms))
    }

    @Test("capture: buffers fill at the stream's pace with the host's samples, scaled by the volume; RELEASE returns the rest")
    func capturePacing() throws {
        let backend = RecordingBackend()
        let bench = try SoundTestBench(backend: backend, periodEvents: false)
        // Mono S16 at 8 kHz, 80-frame periods: 10 ms.
        #expect(bench.setParams(stream: 1, buffer: 1600, period: 160, channels: 1, format: .s16, rate: 1) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 1) == B.ok)
        let buffers = (0..<4).map { _ in bench.record(stream: 1, bytes: 160) }
        let start = monotonicNanoseconds()
        #expect(bench.pcm(.pcmStart, stream: 1) == B.ok)
        let used = bench.waitUsed(VirtioSound.rxQueue, count: 3)
        #expect(used.count == 3)
        for (n, completion) in used.enumerated() {
            #expect(completion.used.length == 168)
            #expect(completion.at + 1_000_000 >= start + UInt64(n + 1) * 10_000_000)
            #expect(completion.at <= start + UInt64(n + 1) * 10_000_000 + 5_000_000)
        }
        // The counting pattern, as S16 samples: bytes 0,1 → 0x0100, ...
        let first = bench.memory.read(buffers[0].data, count: 160)
        #expect(first == (0..<160).map { UInt8($0) })
        #expect(bench.transferStatus(buffers[0].status).status == B.ok)
        #expect(bench.pcm(.pcmStop, stream: 1) == B.ok)
        #expect(bench.pcm(.pcmRelease, stream: 1) == B.ok)
        let rest = bench.harness.queue(VirtioSound.rxQueue).takeUsed()
        #expect(rest.map(\.id) == [UInt32(buffers[3].head)])
        #expect(bench.transferStatus(buffers[3].status).status == B.ok)
    }

    @Test("volume and switch scale the samples the host gets")
    func volumeReachesSamples() throws {
        let backend = RecordingBackend()
        let bench = try SoundTestBench(backend: backend, periodEvents: false)
        let write = { (id: UInt32, value: UInt32) in
            bench.status(B.le(B.Code.ctlWrite.rawValue) + B.le(id) + B.le(value) + [UInt8](repeating: 0, count: 508))
        }
        let buffer = Array(repeating: B.le(Int16(10000)), count: 4).flatMap { $0 }
        // Volume 50: the queued buffer reaches the host halved.
        #expect(write(0, 50) == B.ok)
        #expect(bench.setParams(stream: 0, buffer: 64, period: 16) == B.ok && bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        bench.play(stream: 0, buffer)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
        #expect(bench.waitUsed(VirtioSound.txQueue, count: 1).count == 1)
        #expect(bench.pcm(.pcmStop, stream: 0) == B.ok && bench.pcm(.pcmRelease, stream: 0) == B.ok)
        // Switched off at full volume: silence.
        #expect(write(0, 100) == B.ok && write(1, 0) == B.ok)
        #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        bench.play(stream: 0, buffer)
        #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
        #expect(bench.waitUsed(VirtioSound.txQueue, count: 1).count == 1)
        let played = backend.endpoints[0]!.played
        let samples = stride(from: 0, to: played.count - 1, by: 2).map { Int16(bitPattern: UInt16(played[$0]) | UInt16(played[$0 + 1]) << 8) }
        #expect(Array(samples.prefix(4)) == [5000, 5000, 5000, 5000])
        #expect(samples.filter { $0 != 0 }.count == 4)
    }

    @Test("software volume on every format: half scale halves the amplitude, U8 around its midpoint")
    func scaleEveryFormat() {
        func scaled(_ format: SampleFormat, _ bytes: [UInt8]) -> [UInt8] {
            var copy = bytes
            copy.withUnsafeMutableBytes { format.scale($0, by: 0.5) }
            return copy
        }
        #expect(scaled(.u8, [228, 28, 128]) == [178, 78, 128])
        #expect(scaled(.s16, B.le(Int16(-20000))) == B.le(Int16(-10000)))
        #expect(scaled(.s24, B.le(UInt32(0x00f0_0000))) == B.le(UInt32(0x00f8_0000)))  // -1048576 → -524288
        #expect(scaled(.s32, B.le(Int32(1 << 30))) == B.le(Int32(1 << 29)))
        #expect(scaled(.float, B.le(Float(0.75).bitPattern)) == B.le(Float(0.375).bitPattern))
    }

    @Test("transfers: wrong stream, direction, state or size are BAD_MSG at once; the device keeps serving")
    func badTransfers() throws {
        let bench = try SoundTestBench()
        let wrongStream = bench.play(stream: 7, [0, 0, 0, 0])
        #expect(bench.transferStatus(wrongStream.status).status == B.badMessage)
        let notPrepared = bench.play(stream: 0, [0, 0, 0, 0])
        #expect(bench.transferStatus(notPrepared.status).status == B.badMessage)
        #expect(bench.setParams(stream: 0) == B.ok && bench.pcm(.pcmPrepare, stream: 0) == B.ok)
        let captureOnTx = bench.play(stream: 1, [0, 0, 0, 0])
        #expect(bench.transferStatus(captureOnTx.status).status == B.badMessage)
        let partialFrame = bench.play(stream: 0, [0, 0, 0])
        #expect(bench.transferStatus(partialFrame.status).status == B.badMessage)
        let empty = bench.play(stream: 0, [])
        #expect(bench.transferStatus(empty.status).status == B.badMessage)
        let playbackOnRx = bench.record(stream: 0, bytes: 4)
        #expect(bench.transferStatus(playbackOnRx.status).status == B.badMessage)
        // No room for the status: returned with length 0.
        bench.harness.queue(VirtioSound.txQueue).submit([.readable(bench.memory.allocate(8), 8)])
        bench.harness.run()
        let used = bench.harness.queue(VirtioSound.txQueue).takeUsed()
        #expect(used.last?.length == 0)
        #expect(bench.query(.pcmInfo, start: 0, count: 1, size: 32).status == B.ok)
    }

    @Test("events: jack changes and period elapsed go to eventq buffers")
    func events() throws {
        let bench = try SoundTestBench()
        let first = bench.queueEvent(), second = bench.queueEvent()
        bench.device.setJack(1, connected: false)
        bench.harness.wait(milliseconds: 100)
        bench.harness.run()
        #expect(bench.memory.read(first, count: 8) == B.le(B.Code.jackDisconnected.rawValue) + B.le(UInt32(1)))
        #expect(bench.query(.jackInfo, start: 1, count: 1, size: 24).items[16] == 0)
        #expect(bench.run(stream: 0, buffer: 64, period: 16))
        bench.play(stream: 0, [UInt8](repeating: 0, count: 16))
        _ = bench.waitUsed(VirtioSound.txQueue, count: 1)
        #expect(bench.memory.read(second, count: 8) == B.le(B.Code.pcmPeriodElapsed.rawValue) + B.le(UInt32(0)))
    }
}
