// vhost-user-snd in a real guest: QEMU's vhost-user-snd-pci, Linux's virtio_snd driver (built into
// the small kernel), the ALSA ioctls through a static guest tool. One boot checks the card and
// streams in /proc/asound, 2 s of a 1 kHz tone reaching the host's WAV file, a guest volume change
// scaling the samples, and capture of a host WAV file arriving sample for sample.

import Foundation
import GuestBed
import Testing
import VhostUserKit

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct SoundGuestTests {
    /// Frames the guest captures: 0.5 s of 48 kHz stereo S16.
    static let captureFrames = 24000

    static let script = """
        set -e
        echo "cards=$(cat /proc/asound/cards | head -1)"
        for d in /proc/asound/card0/pcm*; do echo "stream.$(basename $d)=$(grep -m1 '^name:' $d/info 2>/dev/null || basename $d)"; done
        snd-tool play /dev/snd/pcmC0D0p 2 1000 || { dmesg | tail -15; exit 1; }
        echo played=loud
        snd-tool volume /dev/snd/controlC0 "PCM Playback Volume" 50
        snd-tool play /dev/snd/pcmC0D0p 1 1000
        echo played=quiet
        snd-tool capture /dev/snd/pcmC0D0c \(captureFrames) > /tmp/captured
        echo "captured.bytes=$(wc -c < /tmp/captured)"
        echo "captured.sha256=$(sha256sum /tmp/captured | cut -d' ' -f1)"
        """

    @Test func guestPlaysATonePlaysItQuieterAndCapturesAHostFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snd-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The capture source: pseudo-random stereo S16, 1 s, so the guest's 0.5 s is its first half.
        var generator = SystemRandomNumberGenerator()
        let source = (0..<48000 * 4).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let layout = (format: 1, channels: 2, rate: 48000)
        try Data(Self.wavHeader(dataBytes: source.count, channels: layout.channels, rate: layout.rate) + source)
            .write(to: URL(fileURLWithPath: "\(dir)/capture.wav"))

        let daemon = GuestDaemon(
            executable: "vhost-user-snd",
            arguments: ["--backend", "wav", "--wav-dir", dir, "--capture-file", "\(dir)/capture.wav",
                        "--playback", "channels=1-2:formats=s16,s32:rates=44100,48000",
                        "--capture", "channels=2:formats=s16:rates=48000"],
            // controls=on: QEMU exposes the config's `controls` field (and VIRTIO_SND_F_CTLS) only then.
            qemuDevice: "vhost-user-snd-pci", qemuDeviceOptions: ",controls=on")
        let start = ContinuousClock.now
        let result = try GuestTestBed.run(daemons: [daemon], modules: [], script: Self.script, timeout: .seconds(240),
                                          machine: .customKernel, tools: ["snd-tool"])
        print("SoundGuestTests: guest run took \(ContinuousClock.now - start)")
        #expect(result.status == 0, "guest output:\n\(result.output)\ndaemon:\n\(result.daemonLogs.joined(separator: "\n").suffix(3000))")
        let values = result.values
        #expect(values["cards"]?.contains("virtio") == true || values["cards"]?.contains("VirtIO") == true, "cards: \(values["cards"] ?? "none")")
        #expect(values.keys.contains("stream.pcm0p") && values.keys.contains("stream.pcm0c"), "\(values)")

        // Playback: ~2 s of 1 kHz at amplitude 16000, then ~1 s at 8000 (volume 50).
        let wav = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/playback-0.wav")))
        let left = Self.leftChannel(wav)
        let loud = Self.toneSegment(left, amplitude: 14000...17000)
        let quiet = Self.toneSegment(left, amplitude: 7000...9000)
        print("SoundGuestTests: loud \(loud.seconds) s at \(loud.hertz) Hz, quiet \(quiet.seconds) s at \(quiet.hertz) Hz")
        #expect(abs(loud.seconds - 2.0) < 0.1, "loud tone lasted \(loud.seconds) s")
        #expect(abs(loud.hertz - 1000) < 5, "loud tone at \(loud.hertz) Hz")
        #expect(abs(quiet.seconds - 1.0) < 0.1, "quiet tone lasted \(quiet.seconds) s")
        #expect(abs(quiet.hertz - 1000) < 5, "quiet tone at \(quiet.hertz) Hz")

        // Capture: the guest got the file's first 0.5 s exactly.
        let expected = Array(source.prefix(Self.captureFrames * 4))
        #expect(values["captured.bytes"] == "\(expected.count)")
        #expect(values["captured.sha256"] == (try BlockGuestTests.sha256(Data(expected))))
    }

    static func wavHeader(dataBytes: Int, channels: Int, rate: Int) -> [UInt8] {
        func le32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
        func le16(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt16(v).littleEndian, Array.init) }
        return Array("RIFF".utf8) + le32(36 + dataBytes) + Array("WAVEfmt ".utf8) + le32(16) + le16(1) + le16(channels)
            + le32(rate) + le32(rate * channels * 2) + le16(channels * 2) + le16(16) + Array("data".utf8) + le32(dataBytes)
    }

    /// The left channel of a stereo S16 WAV file (44-byte header, as the daemon writes for S16).
    static func leftChannel(_ wav: [UInt8]) -> [Int16] {
        stride(from: 44, to: wav.count - 3, by: 4).map { Int16(bitPattern: UInt16(wav[$0]) | UInt16(wav[$0 + 1]) << 8) }
    }

    /// The 10 ms blocks whose peak lies in `amplitude`: their total duration, and the frequency the
    /// zero crossings inside them give (two per cycle; ±5 Hz over a second of tone).
    static func toneSegment(_ samples: [Int16], amplitude: ClosedRange<Int>) -> (seconds: Double, hertz: Double) {
        let block = 480
        let tone = stride(from: 0, to: samples.count - block, by: block).map { start in
            amplitude.contains(Int(samples[start..<start + block].map { abs(Int($0)) }.max() ?? 0))
        }
        // The frequency from the blocks inside the tone only (an edge block is part tone, part silence).
        let inside = tone.indices.map { $0 > 0 && $0 < tone.count - 1 && tone[$0 - 1] && tone[$0] && tone[$0 + 1] }
        var crossings = 0, toneSamples = 0
        for i in stride(from: 1, to: tone.count * block, by: 1) where inside[i / block] && inside[(i - 1) / block] {
            toneSamples += 1
            if (samples[i - 1] < 0) != (samples[i] < 0) { crossings += 1 }
        }
        let seconds = Double(tone.filter { $0 }.count * block) / 48000
        return (seconds, toneSamples > 0 ? Double(crossings) / 2 / (Double(toneSamples) / 48000) : 0)
    }
}
