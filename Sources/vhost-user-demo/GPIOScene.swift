// The demo's vhost-user-gpio: a simulated chip with named lines, 0 and 1 wired together, seen by the
// guest's gpio-virtio driver (the custom kernel) through gpio-tool: its names, an output read back on
// its partner, and the partner's rising-edge interrupt.

import GuestBed

extension DemoScene {
    static let gpio = DemoScene(name: "gpio", summary: "vhost-user-gpio: named lines, a loopback pair and an edge interrupt (gpio-virtio)") { arguments in
        let daemon = GuestDaemon(executable: "vhost-user-gpio",
                                 arguments: arguments.isEmpty ? ["--line-names", "led,button,relay,door", "--loopback", "0-1"] : arguments,
                                 qemuDevice: "vhost-user-gpio-pci")
        let result = try runGuest(
            "\(daemon.commandLine): booting the custom kernel under QEMU (TCG) with vhost-user-gpio-pci and gpio-virtio",
            daemons: [daemon], modules: [],
            script: """
                set -e
                chip=$(ls /dev/gpiochip* | head -n 1)
                echo "chip: $chip"
                gpio-tool info $chip | sed 's/=/: /'
                gpio-tool loop $chip 0 1 | sed 's/=/: /'
                # An interrupt on line 1 (rising edge), armed before line 0 drives it high.
                gpio-tool wait $chip 1 rising 20000 1 > edge &
                tries=0
                while ! grep -q waiting edge; do tries=$((tries + 1)); [ $tries -lt 200 ] || exit 1; sleep 0.1; done
                gpio-tool set $chip 0 1 | sed 's/=/: /'
                wait $!
                echo "interrupt on line 1: $(sed -n 's/^rising.event1=//p' edge)"
                """,
            machine: .customKernel, tools: ["gpio-tool"])
        let values = result.labelled
        guard !arguments.isEmpty || (values["line0"] == "led,in" && values["line1"] == "button,in") else {
            throw DemoFailure("the guest sees lines \(values["line0"] ?? "?"), \(values["line1"] ?? "?"), not led and button")
        }
        guard values["loop_high"] == "1", values["loop_low"] == "0" else {
            throw DemoFailure("line 1 read \(values["loop_high"] ?? "?") then \(values["loop_low"] ?? "?") while line 0 drove 1 then 0")
        }
        guard values["interrupt on line 1"] == "rising" else { throw DemoFailure("no rising-edge interrupt on line 1") }
        return "the guest saw \(values["lines"] ?? "?") named lines, drove line 0 and read it back on line 1, and got its rising-edge interrupt"
    }
}
