import Testing
import VhostUserKit
import VhostUserTesting
@testable import SoundDevice
#if canImport(Glibc)
import Glibc
#endif

/// The pipewire backend against a PipeWire daemon the test starts (a null sink, no session
/// manager: the test links the ports as one would): a playback stream plays into the sink, a
/// capture stream records the sink's monitor, and what is captured is what was played.
@Suite("virtio-snd pipewire backend (a PipeWire daemon of the test's own)", .serialized)
struct SoundPipeWireTests {
    static let period = 1920   // 10 ms of 48 kHz stereo S16
    static let sample: Int16 = 0x1234

    @Test("periods played into the null sink come back from its monitor, sample for sample")
    func loopbackThroughTheSink() throws {
        if let reason = PipeWireDaemon.unavailable {
            print("SKIPPED: \(reason)")
            return
        }
        let daemon = try PipeWireDaemon()
        defer { daemon.stop() }
        let backend = try PipeWireBackend(playback: "vhu-sink", capture: "vhu-sink")
        let parameters = PCMParameters(bufferBytes: UInt32(Self.period * 4), periodBytes: UInt32(Self.period), channels: 2,
                                       format: .s16, rate: 48000)
        let playback = try backend.open(stream: 0, spec: try StreamSpec.parse("channels=2", direction: .output), parameters: parameters)
        let capture = try backend.open(stream: 1, spec: try StreamSpec.parse("channels=2", direction: .input), parameters: parameters)
        // The streams' ports are numbered (the guest's channel map is not passed on).
        for (number, channel) in ["FL", "FR"].enumerated() {
            try daemon.link("vhost-user-snd-playback-0:output_\(number + 1)", "vhu-sink:playback_\(channel)")
            try daemon.link("vhu-sink:monitor_\(channel)", "vhost-user-snd-capture-1:input_\(number + 1)")
        }

        // The test is the worker, about every 10 ms: it tops the playback ring up to
        // its 4 periods (40 ms ahead: a test thread slowed down by a sanitizer or a loaded machine does
        // not leave gaps of silence in what the sink plays) and takes every period captured so far,
        // until one is the played constant throughout (bounded: 20 s).
        let played = [Int16](repeating: Self.sample.littleEndian, count: Self.period / 2)
        var captured = [Int16](repeating: 0, count: Self.period / 2)
        let ahead = PipeWireStream.slots * Self.period
        let start = monotonicNanoseconds()
        var periods = 0, heard = false
        while !heard && monotonicNanoseconds() - start < 20_000_000_000 {
            while playback.delayBytes < ahead { played.withUnsafeBytes { playback.play($0) } }
            while !heard && capture.delayBytes > 0 {
                captured.withUnsafeMutableBytes { capture.capture(into: $0) }
                heard = captured.allSatisfy { Int16(littleEndian: $0) == Self.sample }
                periods += 1
            }
            usleep(10_000)
        }
        #expect(heard, "no captured period held the played samples after \(periods) captured periods")
        print("pipewire: the played samples came back from the sink's monitor after \(periods) captured periods of 10 ms")
    }
}
