// The watchdog: a test drop-in shortens WatchdogSec; the daemon pings, and a daemon that stops
// responding (SIGSTOP, so that its watchdog thread stops too) is killed and restarted by systemd.

import Foundation
import SystemdBed
import Testing

extension SystemdUnitTests {
    static let watchdogSeconds = 3

    @Test(arguments: UnitProfile.all)
    func watchdogIsPingedAndAHungDaemonIsRestarted(_ profile: UnitProfile) throws {
        let container = try profile.bootInstance(serviceDropIn: "WatchdogSec=\(Self.watchdogSeconds)s\n")
        defer { Self.expectCleanShutdown(container) }
        try container.check(["systemctl", "start", profile.service])

        let names = ["ActiveState", "MainPID", "NRestarts", "WatchdogUSec", "WatchdogTimestampMonotonic"]
        let started = try container.properties(of: profile.service, names)
        #expect(started["ActiveState"] == "active" && started["WatchdogUSec"] == "\(Self.watchdogSeconds)s", "\(started)")
        let pid = started["MainPID"] ?? "0"

        // Pinged: the watchdog timestamp moves on (at half the interval), more than a whole
        // interval after the start, and the service is still the same process.
        var stamp = started["WatchdogTimestampMonotonic"] ?? ""
        for _ in 0..<3 {
            let previous = stamp
            stamp = try container.waitFor(profile.service, names, timeout: .seconds(Self.watchdogSeconds * 2), "pinging the watchdog") {
                $0["WatchdogTimestampMonotonic"] != previous
            }["WatchdogTimestampMonotonic"] ?? ""
        }
        let pinged = try container.properties(of: profile.service, names)
        #expect(pinged["MainPID"] == pid && pinged["NRestarts"] == "0" && pinged["ActiveState"] == "active", "\(pinged)")

        // Hung: systemd kills it when the interval passes without a ping, and starts it again.
        try container.check(["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", profile.service])
        let restarted = try container.waitFor(profile.service, names, timeout: .seconds(60), "restarted after the watchdog timeout") {
            $0["NRestarts"] == "1" && $0["ActiveState"] == "active" && $0["MainPID"] != pid && $0["MainPID"] != "0"
        }
        print("\(profile): hung pid \(pid), restarted as \(restarted["MainPID"] ?? "?")")
        let journal = container.journal(of: profile.service)
        #expect(journal.contains("Watchdog timeout"), "the journal does not say the watchdog fired:\n\(journal)")
        try container.check(["systemctl", "stop", profile.service], timeout: .seconds(120))
    }
}
