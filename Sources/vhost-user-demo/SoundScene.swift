// The demo's vhost-user-snd: the guest's virtio_snd driver (the custom kernel) plays a 440 Hz tone
// for a second through snd-tool (ALSA ioctls), and the daemon's wav backend records it on the host.

import Foundation
import GuestBed

extension DemoScene {
    static let sound = DemoScene(name: "snd", summary: "vhost-user-snd: a guest plays a tone, the host records it to a WAV file (virtio_snd)") { arguments in
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vhost-user-demo-snd-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = GuestDaemon(executable: "vhost-user-snd",
                                 arguments: ["--backend", "wav", "--wav-dir", dir] + arguments,
                                 qemuDevice: "vhost-user-snd-pci", qemuDeviceOptions: ",controls=on")
        let result = try runGuest(
            "\(daemon.commandLine): booting the custom kernel under QEMU (TCG) with vhost-user-snd-pci and virtio_snd",
            daemons: [daemon], modules: [],
            script: """
                set -e
                echo "card: $(head -n 1 /proc/asound/cards | sed 's/^ *//')"
                snd-tool play /dev/snd/pcmC0D0p 1 440
                echo "played: 1 s of 440 Hz"
                """,
            machine: .customKernel, tools: ["snd-tool"])
        guard result.labelled["played"] != nil else { throw DemoFailure("the guest could not play: \(result.output)") }
        let wav = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/playback-0.wav"))
        // 48 kHz stereo S16 after a 44-byte header: 192000 bytes a second.
        let seconds = Double(max(0, wav.count - 44)) / 192_000
        guard seconds >= 0.95 else { throw DemoFailure("the host recorded \(seconds) s, not the guest's second") }
        return "the guest's card (\(result.labelled["card"] ?? "?")) played a second of 440 Hz; the host recorded \(String(format: "%.2f", seconds)) s to playback-0.wav"
    }
}
