import Foundation
import Testing

/// When stderr is the systemd journal, every line starts with its syslog priority so
/// `journalctl -p err` shows only errors.
@Suite("logging to the journal")
struct JournalTests {
    @Test("with JOURNAL_STREAM set, lines carry syslog priority prefixes: <6> info, <2> critical")
    func priorityPrefixes() throws {
        let dir = try TemporaryDirectory()
        let socket = "\(dir.path)/rng.sock"
        let daemon = try DaemonProcess(command: [try Binaries.path("vhost-user-rng"), "--socket-path", socket],
                                       environment: ["JOURNAL_STREAM": "8:12345"])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(socket)")
        #expect(daemon.standardErrorLines.contains("<6>vhost-user-rng: listening on \(socket)"), "\(daemon.diagnostics)")

        let failing = try DaemonProcess(command: [try Binaries.path("vhost-user-rng"), "--socket-path", socket],
                                        environment: ["JOURNAL_STREAM": "8:12345"])
        #expect(failing.waitForExit(timeout: .seconds(10)) == 1)
        #expect(failing.standardErrorLines.contains { $0.hasPrefix("<2>vhost-user-rng: another process is listening on") }, "\(failing.diagnostics)")
    }

    @Test("without JOURNAL_STREAM, lines start with the level's name")
    func plainLevels() throws {
        let dir = try TemporaryDirectory()
        let socket = "\(dir.path)/rng.sock"
        let daemon = try DaemonProcess(command: [try Binaries.path("vhost-user-rng"), "--socket-path", socket])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(socket)")
        #expect(daemon.standardErrorLines.contains("info vhost-user-rng: listening on \(socket)"))
    }
}
