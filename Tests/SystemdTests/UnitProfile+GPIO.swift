import Foundation
import GuestBed
import SystemdBed
import Testing

extension UnitProfile {
    /// A simulated chip whose line names and loopback pair the options set, driven by the custom
    /// kernel's gpio_virtio (Debian's kernel has no GPIO_VIRTIO) through gpio-tool.
    static let gpio = UnitProfile(
        daemon: "gpio",
        options: "VHOST_USER_GPIO_OPTIONS=\"--lines 4 --line-names led,button,fan,door --loopback 0-1 --log-level debug\"\n",
        qemuDevice: "vhost-user-gpio-pci",
        machine: .customKernel, tools: ["gpio-tool"],
        guestScript: { _ in
            """
            set -e
            chip=$(ls /dev/gpiochip* | head -n 1)
            gpio-tool info $chip
            gpio-tool loop $chip 0 1
            """
        },
        checkGuest: { run, values, _, _ in
            #expect(values["lines"] == "4", "run \(run): the guest sees \(values["lines"] ?? "no") lines")
            #expect(values["loop_high"] == "1" && values["loop_low"] == "0",
                    "run \(run): loopback read \(values["loop_high"] ?? "?") then \(values["loop_low"] ?? "?")")
        },
        checkOptions: { container, first in
            // --line-names: the names the guest's driver read from the config.
            #expect((0..<4).map { first["line\($0)"] ?? "?" } == ["led,in", "button,in", "fan,in", "door,in"],
                    "line names: \((0..<4).map { first["line\($0)"] ?? "?" })")
            // --log-level debug: the queues' start lines reach the journal.
            try container.waitForJournal(of: "vhost-user-gpio@vm1.service", containing: "queue 1 started",
                                         priority: "debug", timeout: .seconds(10))
        })
}
