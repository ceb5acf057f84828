// The demo's vhost-user-input: a synthetic keyboard and tablet in the guest (virtio_input, evdev),
// "hello" typed into the guest through the keyboard's control socket, the tablet's ranges read back.

import Foundation
import GuestBed

extension DemoScene {
    static let input = DemoScene(name: "input", summary: "vhost-user-input: a synthetic keyboard typing into the guest, a tablet's ranges (virtio_input)") { arguments in
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("demo-input-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let controlSocket = "\(directory)/keyboard.ctl"
        let text = "hello"
        let keyboard = GuestDaemon(executable: "vhost-user-input", arguments: ["--kind", "keyboard", "--control-socket", controlSocket] + arguments,
                                   qemuDevice: "vhost-user-input-pci")
        let tablet = GuestDaemon(executable: "vhost-user-input", arguments: ["--kind", "tablet"], qemuDevice: "vhost-user-input-pci")
        let result = try runGuest(
            "\(keyboard.commandLine) and \(tablet.commandLine): booting Linux with two vhost-user-input-pci devices",
            daemons: [keyboard, tablet], modules: ["virtio_input", "evdev"],
            script: """
                set -e
                for name in "vhost-user keyboard" "vhost-user tablet"; do
                    i=0; until evdev-tool find "$name" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 3; sleep 0.1; done
                done
                grep '^N: Name=' /proc/bus/input/devices | sed 's/^N: Name=/input device: /'
                evdev-tool info "$(evdev-tool find "vhost-user tablet")" | grep '^abs' | sed 's/^abs.0=/tablet X range (min max fuzz flat res): /; s/^abs.1=/tablet Y range (min max fuzz flat res): /'
                echo "the keyboard's events as /dev/input reports them (type code value), the host typing \\"\(text)\\" through the control socket:"
                evdev-tool read "$(evdev-tool find "vhost-user keyboard")" \(text.count * 4) @@keyboard-ready
                """,
            tools: ["evdev-tool"],
            hostAction: { control in
                try control.waitForLine("@@keyboard-ready", timeout: .seconds(120))
                let reply = try UnixLineClient(path: controlSocket).command("type \"\(text)\"")
                guard reply == "ok" else { throw GuestTestBedError("type \"\(text)\": \(reply)") }
            })
        // KEY_H, KEY_E, KEY_L, KEY_O pressed (type 1, value 1) in order spell the text.
        let letters: [Int: Character] = [35: "h", 18: "e", 38: "l", 24: "o"]
        let events = result.output.split(separator: "\n").drop { $0 != "@@keyboard-ready" }.dropFirst()
        let typed = String(events.compactMap { line -> Character? in
            let fields = line.split(separator: " ").compactMap { Int($0) }
            guard fields.count == 3, fields[0] == 1, fields[2] == 1 else { return nil }
            return letters[fields[1]]
        })
        guard typed == text else { throw DemoFailure("the guest read \"\(typed)\" from the keyboard, not \"\(text)\"") }
        guard result.labelled["tablet X range (min max fuzz flat res)"] == "0 32767 0 0 0" else {
            throw DemoFailure("the guest sees the tablet's X axis as \(result.labelled["tablet X range (min max fuzz flat res)"] ?? "missing"), not 0..32767")
        }
        return "the guest read \"\(text)\" typed through vhost-user-input's control socket, and the tablet's 0..32767 ranges"
    }
}
