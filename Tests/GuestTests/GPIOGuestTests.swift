// vhost-user-gpio in a real guest: QEMU's vhost-user-gpio-pci, Linux's gpio-virtio driver (built into
// the custom kernel: Debian's has no GPIO_VIRTIO), the GPIO character device through gpio-tool.
//
// What the guest covers: the chip and its line names, an output driving its loopback partner, and
// edge interrupts: raised by the host through the control socket, two rising edges in a row (the
// second one after the driver's unmask re-queued the eventq buffer) and a falling then a rising
// edge on a both-edge line, one edge at a time (the device latches one edge while the line is
// masked, and the character device reads the level to name a both-edge event), and raised by the
// guest itself through a loopback pair (an output's edge on its partner).
//
// Level interrupts: the character device exposes edges only, so the custom kernel has an in-kernel
// consumer, gpio-irq-probe (scripts/guest-kernel/gpio-irq-probe.c, /sys/kernel/gpio_irq_probe), whose
// threaded one-shot handler counts firings with the line masked while it runs. While the host holds
// the level, every unmask re-queues the eventq buffer and the device fires again: the count grows;
// once the host drops the level the count stops.

import Foundation
import GuestBed
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct GPIOGuestTests {
    static let script = """
        set -e
        chip=$(ls /dev/gpiochip* | head -n 1)
        gpio-tool info $chip
        gpio-tool loop $chip 0 1
        gpio-tool wait $chip 5 rising 30000 2
        gpio-tool wait $chip 5 both 30000 2
        gpio-tool get $chip 5
        # An interrupt the guest raises itself: line 0 driven high raises its loopback partner, line 1.
        gpio-tool wait $chip 1 rising 30000 1 > edge &
        tries=0
        while ! grep -q waiting edge; do tries=$((tries + 1)); [ $tries -lt 300 ] || exit 1; sleep 0.1; done
        gpio-tool set $chip 0 1
        wait $!
        sed -n 's/^rising[.]/loopback./p' edge
        """

    @Test func guestSeesNamedLinesLoopbackAndHostRaisedEdgeInterrupts() throws {
        let control = "/tmp/vhu-gpio-guest-\(getpid()).sock"
        defer { unlink(control) }
        let daemon = GuestDaemon(executable: "vhost-user-gpio",
                                 arguments: ["--line-names", "led,button,a,b,c,doorbell", "--loopback", "0-1",
                                             "--control-socket", control],
                                 qemuDevice: "vhost-user-gpio-pci")
        let result = try GuestTestBed.run(
            daemons: [daemon], modules: [], script: Self.script, timeout: .seconds(180), machine: .customKernel,
            tools: ["gpio-tool"],
            hostAction: { guest in
                // Each wait prints "waiting" once its interrupt is enabled (an edge is latched from
                // then on, one at a time), and a line per event; the host makes one edge at a time.
                try guest.waitForLine("waiting", timeout: .seconds(120))
                let socket = try UnixLineClient(path: control)
                func edge(_ command: String, then line: String) throws {
                    try socket.expectOK(command)
                    try guest.waitForLine(line, timeout: .seconds(60))
                }
                try edge("set doorbell 1", then: "rising.event1=rising")
                try socket.expectOK("set doorbell 0")  // not an edge a rising trigger reports
                try edge("set doorbell 1", then: "rising.event2=rising")
                try guest.waitForLine("waiting", timeout: .seconds(60))
                try edge("set doorbell 0", then: "both.event1=falling")
                try edge("set doorbell 1", then: "both.event2=rising")
            })
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let values = result.values
        #expect(values["lines"] == "8")
        #expect(values["label"]?.hasPrefix("virtio") == true, "chip label \(values["label"] ?? "none")")
        #expect(values["line0"] == "led,in" && values["line1"] == "button,in" && values["line5"] == "doorbell,in" && values["line6"] == ",in",
                "line names: \((0..<8).map { values["line\($0)"] ?? "?" })")
        #expect(values["loop_high"] == "1" && values["loop_low"] == "0", "loopback: \(values["loop_high"] ?? "?") \(values["loop_low"] ?? "?")")
        #expect(values["rising.event1"] == "rising" && values["rising.event2"] == "rising", "rising waits: \(result.output)")
        #expect(values["both.event1"] == "falling" && values["both.event2"] == "rising", "both-edge waits: \(result.output)")
        #expect(values["value"] == "1")
        #expect(values["set"] == "1" && values["loopback.event1"] == "rising", "loopback interrupt: \(result.output)")
    }

    /// The level test's guest side, per trigger: the probe's count at the request (the line at its
    /// inactive level), after the host drove the active level and it held for 20 firings, when the
    /// host had dropped it (`at_inactive`), and once it stopped changing (`settled`: equal over 5
    /// reads 0.1 s apart, within 10 s). Each wait is bounded and its failure shows in the values.
    static let levelScript = """
        set -e
        probe=/sys/kernel/gpio_irq_probe
        [ -d $probe ] || { echo "the guest kernel has no gpio_irq_probe: run scripts/prepare-guest-kernel" >&2; exit 1; }
        chip=$(basename $(ls /dev/gpiochip* | head -n 1))
        count() { cat $probe/count; }
        reaches() {
            tries=0
            while [ $(count) -lt $1 ]; do tries=$((tries + 1)); [ $tries -lt 300 ] || return 1; sleep 0.1; done
        }
        settled() {
            last=-1; same=0; tries=0
            while [ $same -lt 5 ]; do
                now=$(count)
                if [ $now = $last ]; then same=$((same + 1)); else same=0; last=$now; fi
                tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "$1.settled=never (at $now)"; return 1; }
                sleep 0.1
            done
            echo $1.settled=$last
        }
        # host LINE VALUE: the host drives the simulated input through the control socket.
        host() { echo "@@set $1 $2"; read -r reply <&3; }
        level() {  # TRIGGER LINE ACTIVE INACTIVE
            echo "$chip $2 $1" > $probe/request
            echo $1.armed=$(count)
            host $2 $3
            reaches 20 || echo "$1.stuck=$(count)"
            echo $1.firings=$(count)
            host $2 $4
            echo $1.at_inactive=$(count)
            settled $1
            echo released > $probe/release
        }
        level high 2 1 0
        host 3 1
        level low 3 0 1
        """

    @Test func levelInterruptFiresAgainAfterEachUnmaskWhileTheLevelHolds() throws {
        let control = "/tmp/vhu-gpio-level-\(getpid()).sock"
        defer { unlink(control) }
        let daemon = GuestDaemon(executable: "vhost-user-gpio", arguments: ["--control-socket", control],
                                 qemuDevice: "vhost-user-gpio-pci")
        // In the script's order: line 2 high then low; line 3 high (inactive for the low trigger), low, high.
        let commands = ["set 2 1", "set 2 0", "set 3 1", "set 3 0", "set 3 1"]
        let result = try GuestTestBed.run(
            daemons: [daemon], modules: [], script: Self.levelScript, timeout: .seconds(240), machine: .customKernel,
            hostAction: { guest in
                let socket = try UnixLineClient(path: control)
                for command in commands {
                    try guest.waitForLine("@@\(command)", timeout: .seconds(120))
                    try socket.expectOK(command)
                    try guest.send("ok")
                }
            })
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let values = result.values
        for trigger in ["high", "low"] {
            func count(_ key: String) -> Int? { values["\(trigger).\(key)"].flatMap { Int($0) } }
            // The inactive level at the request: nothing fires.
            #expect(count("armed") == 0, "level-\(trigger) fired at the inactive level: \(result.output)")
            // One change to the active level, then one firing after each unmask while it holds.
            #expect((count("firings") ?? 0) >= 20, "level-\(trigger) fired \(count("firings") ?? 0) times: \(result.output)")
            // Back to the inactive level: at most the event already in flight, then nothing.
            if let atInactive = count("at_inactive"), let settled = count("settled") {
                #expect(settled >= atInactive && settled <= atInactive + 1,
                        "level-\(trigger): \(atInactive) when the level dropped, \(settled) after: \(result.output)")
            } else {
                Issue.record("level-\(trigger) did not stop firing: \(result.output)")
            }
        }
    }
}
