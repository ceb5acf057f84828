import Testing
import VhostUserKit
import VhostUserTesting
@testable import SoundDevice
#if canImport(Glibc)
import Glibc
#endif

private typealias B = SoundTestBench

/// The alsa backend against alsa-lib's `file` and `null` plugins (no sound card needed): playback
/// reaches the file byte for byte through the backend thread; capture reads a file's samples.
@Suite("virtio-snd alsa backend (alsa-lib file plugin)")
struct SoundALSATests {
    static func configuration(output: String, input: String) -> String {
        """
        pcm.vhunull { type null }
        pcm.vhuplay { type file slave.pcm vhunull file "\(output)" format raw }
        pcm.vhucapture { type file slave.pcm vhunull file "/dev/null" infile "\(input)" format raw }
        """
    }

    @Test("playback periods reach the host PCM in order; capture periods come from it")
    func playbackAndCapture() throws {
        let output = "/tmp/vhu-snd-alsa-out-\(getpid()).raw", input = "/tmp/vhu-snd-alsa-in-\(getpid()).raw"
        defer { unlink(output); unlink(input) }
        let source = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let fd = open(input, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = source.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let periods = 8, period = 1920
        let played = (0..<periods * period).map { UInt8(truncatingIfNeeded: $0 / 2 &+ $0 % 3) }
        do {
            let backend = ALSABackend(playback: "vhuplay", capture: "vhucapture", configuration: Self.configuration(output: output, input: input))
            let streams = [try StreamSpec.parse("channels=2:formats=s16:rates=48000", direction: .output),
                           try StreamSpec.parse("channels=2:formats=s16:rates=48000", direction: .input)]
            let bench = try SoundTestBench(streams: streams, backend: backend, memoryBytes: 8 << 20, periodEvents: false)
            #expect(bench.setParams(stream: 0, buffer: UInt32(period * 4), period: UInt32(period)) == B.ok)
            #expect(bench.pcm(.pcmPrepare, stream: 0) == B.ok)
            for n in 0..<periods { bench.play(stream: 0, Array(played[(n * period)..<((n + 1) * period)]), run: false) }
            bench.harness.run()
            #expect(bench.pcm(.pcmStart, stream: 0) == B.ok)
            #expect(bench.waitUsed(VirtioSound.txQueue, count: periods).count == periods)
            #expect(bench.pcm(.pcmStop, stream: 0) == B.ok && bench.pcm(.pcmRelease, stream: 0) == B.ok)

            // Capture: the backend thread reads ahead into its ring; once it holds a period (a
            // bounded wait on the ring), the period is the infile's first bytes.
            let endpoint = try backend.open(stream: 1, spec: streams[1],
                                            parameters: PCMParameters(bufferBytes: UInt32(period * 4), periodBytes: UInt32(period),
                                                                      channels: 2, format: .s16, rate: 48000))
            let deadline = monotonicNanoseconds() + 5_000_000_000
            while endpoint.delayBytes < period && monotonicNanoseconds() < deadline { sched_yield() }
            var captured = [UInt8](repeating: 0xee, count: period)
            captured.withUnsafeMutableBytes { endpoint.capture(into: $0) }
            #expect(captured == Array(source.prefix(period)), "the captured period differs from the infile's first bytes")
            bench.harness.finish()
        }
        // The endpoints are gone (their PCMs closed, the file plugin flushed): the file holds every period.
        let recorded = readAll(output)
        #expect(recorded.count >= played.count)
        #expect(Array(recorded.prefix(played.count)) == played, "the recording differs from what was played")
    }

    private func readAll(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return bytes }
            bytes += chunk[0..<n]
        }
    }
}
