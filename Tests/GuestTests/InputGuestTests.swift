// vhost-user-input in a real guest: QEMU's vhost-user-input-pci, Linux's virtio_input and evdev,
// /dev/input/eventN read by evdev-tool (Sources/GuestBed/GuestTools/evdev-tool.c).

import Foundation
import GuestBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct InputGuestTests {
    /// Waits for the three devices' event nodes, prints /proc/bus/input/devices' names and the tablet's
    /// ranges, then reads each device's events after a ready line the host answers by sending them.
    static let script = """
        set -e
        for name in "guest keyboard" "vhost-user mouse" "vhost-user tablet"; do
            i=0; until evdev-tool find "$name" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 3; sleep 0.1; done
        done
        grep '^N: Name=' /proc/bus/input/devices | sed 's/^N: /device: /'
        kbd=$(evdev-tool find "guest keyboard"); mouse=$(evdev-tool find "vhost-user mouse"); tablet=$(evdev-tool find "vhost-user tablet")
        evdev-tool info "$tablet" | sed 's/^/tablet./'
        evdev-tool info "$mouse" | sed 's/^/mouse./'
        evdev-tool read "$kbd" 14 @@keyboard
        evdev-tool read "$mouse" 7 @@mouse
        evdev-tool read "$tablet" 6 @@tablet
        echo @@done
        """

    /// What the host sends to each device at its ready line, and the events the guest must read.
    static let sends: [(device: String, lines: [String], events: [String])] = [
        ("keyboard", [#"type "Hi""#, "key KEY_A 1", "sync", "key KEY_A 0", "sync"],
         ["1 42 1", "1 35 1", "0 0 0", "1 35 0", "1 42 0", "0 0 0", "1 23 1", "0 0 0", "1 23 0", "0 0 0",
          "1 30 1", "0 0 0", "1 30 0", "0 0 0"]),
        ("mouse", ["rel 10 -5", "btn BTN_LEFT 1", "sync", "btn BTN_LEFT 0", "wheel 1", "sync"],
         ["2 0 10", "2 1 -5", "1 272 1", "0 0 0", "1 272 0", "2 8 1", "0 0 0"]),
        ("tablet", ["abs 1000 2000", "sync", "abs 32767 0", "sync"],
         ["3 0 1000", "3 1 2000", "0 0 0", "3 0 32767", "3 1 0", "0 0 0"]),
    ]

    @Test func guestSeesTheSyntheticDevicesAndReadsTheEventsTheHostSends() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("input-guest-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket: @Sendable (String) -> String = { kind in "\(directory)/\(kind).sock" }
        let daemons = [
            GuestDaemon(executable: "vhost-user-input", arguments: ["--kind", "keyboard", "--name", "guest keyboard", "--control-socket", socket("keyboard")],
                        qemuDevice: "vhost-user-input-pci"),
            GuestDaemon(executable: "vhost-user-input", arguments: ["--kind", "mouse", "--control-socket", socket("mouse")],
                        qemuDevice: "vhost-user-input-pci"),
            GuestDaemon(executable: "vhost-user-input", arguments: ["--kind", "tablet", "--control-socket", socket("tablet")],
                        qemuDevice: "vhost-user-input-pci"),
        ]
        let result = try GuestTestBed.run(
            daemons: daemons, modules: ["virtio_input", "evdev"], script: Self.script, timeout: .seconds(240),
            tools: ["evdev-tool"],
            hostAction: { control in
                for send in Self.sends {
                    try control.waitForLine("@@\(send.device)", timeout: .seconds(180))
                    let client = try UnixLineClient(path: socket(send.device))
                    for line in send.lines {
                        let reply = try client.command(line)
                        guard reply == "ok" else { throw GuestTestBedError("\(send.device): \(line) → \(reply)") }
                    }
                }
            })
        #expect(result.status == 0, "guest output:\n\(result.output)\nconsole:\n\(result.consoleLog.suffix(3000))")

        let lines = result.output.split(separator: "\n").map(String.init)
        for name in ["guest keyboard", "vhost-user mouse", "vhost-user tablet"] {
            #expect(lines.contains("device: Name=\"\(name)\""), "/proc/bus/input/devices lacks \(name): \(result.output)")
        }
        for send in Self.sends {
            let events = lines.drop { $0 != "@@\(send.device)" }.dropFirst().prefix(send.events.count)
            #expect(Array(events) == send.events, "\(send.device) events")
        }
        let values = result.values
        #expect(values["tablet.abs.0"] == "0 32767 0 0 0")
        #expect(values["tablet.abs.1"] == "0 32767 0 0 0")
        #expect(values["tablet.id"] == "0006 1af4 0102 0001")
        #expect(values["mouse.props"] == "0 ")
    }
}
