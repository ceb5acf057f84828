import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// The common daemon runtime (Sources/VhostUserCLI) exercised through the real `vhost-user-rng`
/// executable: every way of getting a socket, systemd's protocols, capabilities and start-up errors.
/// In every case a fake front-end is actually served: set up, one buffer filled with entropy.
@Suite("daemon runtime as a real process")
struct DaemonTests {
    // MARK: Sockets

    @Test("--socket-path: a front-end is served, then a second one on the same socket file")
    func socketPathServesReconnects() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let daemon = try DaemonProcess(["--socket-path", path])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(path)")
        let before = try #require(inode(of: path))
        do { try expectServed(try FakeFrontend.connect(to: path)) }
        do { try expectServed(try FakeFrontend.connect(to: path)) }
        #expect(inode(of: path) == before, "the socket file was recreated")
    }

    @Test("--socket-path of exactly 107 bytes (the most sun_path holds) works")
    func longestSocketPathWorks() throws {
        let tmp = try TemporaryDirectory()
        let prefix = "\(tmp.path)/"
        let path = prefix + String(repeating: "s", count: UnixListener.maxPathBytes - prefix.utf8.count)
        #expect(path.utf8.count == 107)
        let daemon = try DaemonProcess(["--socket-path", path])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(path)")
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("under systemd-socket-activate a front-end is served", arguments: [[], ["--fdname=vhost-user"]])
    func systemdSocketActivate(extra: [String]) throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let daemon = try DaemonProcess(command: [Binaries.systemdSocketActivate, "-l", path] + extra + [try Binaries.path("vhost-user-rng")])
        defer { daemon.stop() }
        // systemd-socket-activate listens, and starts the daemon at the first connection attempt.
        try daemon.waitForStandardError(containing: "Listening on \(path)")
        try expectServed(try FakeFrontend.connect(to: path))
        // The daemon was handed the socket systemd-socket-activate made (its log may still be in flight).
        try daemon.waitForStandardError(containing: "vhost-user-rng: listening on inherited socket fd 3")
    }

    @Test("hand-made LISTEN_FDS=1 with LISTEN_FDNAMES=vhost-user: served")
    func listenFDsOne() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let listener = try makeListeningSocket(at: path)
        let daemon = try DaemonProcess([], environment: ["LISTEN_FDS": "1", "LISTEN_FDNAMES": "vhost-user"],
                                       descriptors: [3: listener.rawValue], ownPIDVariables: ["LISTEN_PID"])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on inherited socket fd 3")
        try expectServed(try FakeFrontend.connect(to: path))
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("LISTEN_FDS=2 with LISTEN_FDNAMES=other:vhost-user: the socket named vhost-user (fd 4) is served, the other closed")
    func listenFDsPicksNamedSocket() throws {
        let tmp = try TemporaryDirectory()
        let otherPath = "\(tmp.path)/other.sock", path = "\(tmp.path)/rng.sock"
        var other: OwnedDescriptor? = try makeListeningSocket(at: otherPath)
        let listener = try makeListeningSocket(at: path)
        let daemon = try DaemonProcess([], environment: ["LISTEN_FDS": "2", "LISTEN_FDNAMES": "other:vhost-user"],
                                       descriptors: [3: other!.rawValue, 4: listener.rawValue], ownPIDVariables: ["LISTEN_PID"])
        defer { daemon.stop() }
        other = nil  // the daemon now holds the only copy of the other socket
        try daemon.waitForStandardError(containing: "listening on inherited socket fd 4")
        try expectServed(try FakeFrontend.connect(to: path))
        // The daemon closes the sockets it does not use: nobody listens on the other one any more.
        #expect(throws: UnixSocketError.self) { _ = try UnixListener.connect(to: otherPath) }
    }

    @Test("--fd N of a listening socket: served, twice in a row")
    func fdListening() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let listener = try makeListeningSocket(at: path)
        let daemon = try DaemonProcess(["--fd", "5"], descriptors: [5: listener.rawValue])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on inherited socket fd 5")
        do { try expectServed(try FakeFrontend.connect(to: path)) }
        do { try expectServed(try FakeFrontend.connect(to: path)) }
    }

    @Test("--fd N of a connected socket: served once, and the daemon exits 0 when the front-end closes")
    func fdConnected() throws {
        let tmp = try TemporaryDirectory()
        let notify = try NotifySocket(path: "\(tmp.path)/notify")
        var pair: (OwnedDescriptor, OwnedDescriptor)? = try socketPair()
        let daemon = try DaemonProcess(["--fd", "3"], environment: ["NOTIFY_SOCKET": notify.path], descriptors: [3: pair!.1.rawValue])
        defer { daemon.stop() }
        do {
            let frontend = FakeFrontend(socket: pair!.0)
            pair = nil  // the front-end's socket is now its only reference: closed when it goes
            try expectServed(frontend)
        }
        #expect(daemon.waitForExit() == 0, "\(daemon.diagnostics)")
        try notify.waitFor("READY=1") { $0.split(separator: "\n").contains("READY=1") }
        try notify.waitFor("STOPPING=1") { $0.split(separator: "\n").contains("STOPPING=1") }
    }

    @Test("a second daemon on a live socket path fails; after the first is killed, the stale file is replaced")
    func socketPathInUseAndStale() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let first = try DaemonProcess(["--socket-path", path])
        defer { first.stop() }
        try first.waitForStandardError(containing: "listening on \(path)")

        let second = try DaemonProcess(["--socket-path", path])
        defer { second.stop() }
        #expect(second.waitForExit() == 1, "\(second.diagnostics)")
        #expect(second.standardErrorLines.count == 1 && second.standardError.contains("another process is listening on \(path)"),
                "\(second.diagnostics)")
        try expectServed(try FakeFrontend.connect(to: path))  // the first is undisturbed

        first.stop()  // SIGKILL: the socket file stays behind
        #expect(inode(of: path) != nil)
        let third = try DaemonProcess(["--socket-path", path])
        defer { third.stop() }
        try third.waitForStandardError(containing: "listening on \(path)")
        try expectServed(try FakeFrontend.connect(to: path))
    }

    // MARK: sd_notify

    @Test("sd_notify: READY=1 with a status, a status while a queue runs, STOPPING=1 on SIGTERM, exit 0")
    func notifyLifecycle() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let notify = try NotifySocket(path: "\(tmp.path)/notify")
        let daemon = try DaemonProcess(["--socket-path", path], environment: ["NOTIFY_SOCKET": notify.path])
        defer { daemon.stop() }

        let ready = try notify.waitFor("READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(ready.contains("STATUS="), "READY=1 came without a status: \(ready)")
        do {
            // READY=1 means listening: connect without waiting for anything else.
            try expectServed(try FakeFrontend.connect(to: path))
            let status = try notify.waitFor("a status about running queues") { $0.contains("STATUS=") && $0.contains("queue") }
            #expect(status.contains("front-end") && status.contains("1 queue"), "\(status)")
        }
        try notify.waitFor("a status after the front-end left") { $0.contains("STATUS=") && $0.contains("disconnected") }

        daemon.send(SIGTERM)
        try notify.waitFor("STOPPING=1") { $0.split(separator: "\n").contains("STOPPING=1") }
        #expect(daemon.waitForExit(timeout: .seconds(3)) == 0, "\(daemon.diagnostics)")
    }

    @Test("sd_notify: WATCHDOG_USEC=200000 gives WATCHDOG=1 pings at least every 100 ms")
    func watchdogPings() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let notify = try NotifySocket(path: "\(tmp.path)/notify")
        let daemon = try DaemonProcess(["--socket-path", path], environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"],
                                       ownPIDVariables: ["WATCHDOG_PID"])
        defer { daemon.stop() }
        try notify.waitFor("READY=1") { $0.split(separator: "\n").contains("READY=1") }
        let pings = notify.count(2, within: .seconds(2)) { $0 == "WATCHDOG=1" }
        #expect(pings >= 2, "messages: \(notify.messages)\n\(daemon.diagnostics)")
        try expectServed(try FakeFrontend.connect(to: path))
        daemon.send(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(3)) == 0, "\(daemon.diagnostics)")
    }

    // MARK: Shutdown

    @Test("SIGTERM (or SIGINT) while a front-end is connected and its queue runs: exit 0 within a couple of seconds",
          arguments: [SIGTERM, SIGINT])
    func sigtermWhileServing(signal: Int32) throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let daemon = try DaemonProcess(["--socket-path", path])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(path)")
        let served = try expectServed(try FakeFrontend.connect(to: path))
        daemon.send(signal)
        #expect(daemon.waitForExit(timeout: .seconds(3)) == 0, "\(daemon.diagnostics)")
        // Shutting down with a front-end attached is not an error, whatever the session was waiting for.
        #expect(!daemon.standardErrorLines.contains { $0.hasPrefix("error ") }, "\(daemon.diagnostics)")
        withExtendedLifetime(served) {}
    }

    @Test("SIGTERM while serving an inherited connected socket: exit 0")
    func sigtermWhileServingConnected() throws {
        let (ours, theirs) = try socketPair()
        let daemon = try DaemonProcess(["--fd", "3"], descriptors: [3: theirs.rawValue])
        defer { daemon.stop() }
        withExtendedLifetime(theirs) {}
        let served = try expectServed(FakeFrontend(socket: ours))
        daemon.send(SIGTERM)
        #expect(daemon.waitForExit(timeout: .seconds(3)) == 0, "\(daemon.diagnostics)")
        withExtendedLifetime(served) {}
    }

    @Test("SIGTERM right after the daemon says it listens is never lost (25 daemons in a row)")
    func sigtermRightAfterReadyIsNeverLost() throws {
        // A dispatch signal source is registered asynchronously; the daemon used to print
        // "listening on" before it was, and a SIGTERM in that window was dropped (about 1 in 100).
        let tmp = try TemporaryDirectory()
        for i in 0..<25 {
            let path = "\(tmp.path)/\(i).sock"
            let daemon = try DaemonProcess(["--socket-path", path])
            defer { daemon.stop() }
            try daemon.waitForStandardError(containing: "listening on \(path)")
            daemon.send(SIGTERM)
            let status = daemon.waitForExit(timeout: .seconds(3))
            #expect(status == 0, "run \(i): \(daemon.diagnostics)")
            if status != 0 { break }
        }
    }

    @Test("SIGTERM during start-up ends the daemon")
    func sigtermDuringStartup() throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(["--socket-path", "\(tmp.path)/rng.sock"])
        defer { daemon.stop() }
        daemon.send(SIGTERM)
        // Before the signal is blocked the default action ends it (143); after, shutdown does (0).
        let status = daemon.waitForExit(timeout: .seconds(3))
        #expect(status == 0 || status == 128 + SIGTERM, "\(daemon.diagnostics)")
    }

    // MARK: Capabilities

    /// Every daemon with a QEMU discovery file: `share/qemu/vhost-user/50-vhost-user-NAME.json.in`.
    static let discoveryFiles: [String] = {
        let dir = "\(Binaries.repositoryRoot)/share/qemu/vhost-user"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix("50-vhost-user-") && $0.hasSuffix(".json.in") }.sorted().map { "\(dir)/\($0)" }
    }()

    @Test("there is a discovery file for vhost-user-rng")
    func discoveryFilesFound() {
        #expect(Self.discoveryFiles.contains { $0.hasSuffix("/50-vhost-user-rng.json.in") }, "\(Self.discoveryFiles)")
    }

    @Test("--print-capabilities prints JSON whose type matches the QEMU discovery file", arguments: discoveryFiles)
    func printCapabilities(discoveryFile: String) throws {
        let file = (discoveryFile as NSString).lastPathComponent
        let executable = String(file.dropFirst("50-".count).dropLast(".json.in".count))
        let discovery = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: discoveryFile))) as? [String: Any])
        #expect((discovery["binary"] as? String)?.hasSuffix("/\(executable)") == true, "\(file): binary \(discovery["binary"] ?? "none")")

        let daemon = try DaemonProcess(product: executable, ["--print-capabilities"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 0, "\(daemon.diagnostics)")
        let object = try JSONSerialization.jsonObject(with: Data(daemon.standardOutput.utf8))
        let capabilities = try #require(object as? [String: Any], "not a JSON object: \(daemon.standardOutput)")
        let type = try #require(capabilities["type"] as? String, "no type: \(daemon.standardOutput)")
        #expect(capabilities["features"] is [Any], "features is not an array: \(daemon.standardOutput)")
        #expect(type == discovery["type"] as? String, "\(executable) says type \(type), \(file) says \(discovery["type"] ?? "none")")
    }

    // MARK: Start-up errors

    /// Runs the daemon expecting it to fail at once; returns its stderr lines.
    private func failure(_ arguments: [String], status expected: Int32? = 1) throws -> [String] {
        let daemon = try DaemonProcess(arguments)
        defer { daemon.stop() }
        let status = try #require(daemon.waitForExit(), "still running: \(daemon.diagnostics)")
        if let expected {
            #expect(status == expected, "\(daemon.diagnostics)")
        } else {
            #expect(status != 0 && status < 128, "\(daemon.diagnostics)")
        }
        return daemon.standardErrorLines
    }

    @Test("a socket path longer than 107 bytes: exit 1 and one line saying so")
    func socketPathTooLong() throws {
        let path = "/tmp/" + String(repeating: "x", count: 103)
        #expect(path.utf8.count == 108)
        let lines = try failure(["--socket-path", path])
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first.map { $0.contains("socket path") && $0.contains("long") && $0.contains("107") } == true, "\(lines)")
        #expect(inode(of: path) == nil)
    }

    @Test("--fd of a descriptor that is not open: exit 1 and one line naming it")
    func fdNotOpen() throws {
        let lines = try failure(["--fd", "99"])
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first.map { $0.contains("--fd 99") && $0.contains("not a socket") } == true, "\(lines)")
    }

    @Test("--fd of a descriptor that is not a socket: exit 1")
    func fdNotASocket() throws {
        let daemon = try DaemonProcess(["--fd", "0"])  // stdin is /dev/null
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 1, "\(daemon.diagnostics)")
        #expect(daemon.standardErrorLines.count == 1 && daemon.standardError.contains("not a socket"), "\(daemon.diagnostics)")
    }

    @Test("no socket option and no LISTEN_FDS: exit 1 and one line saying what to give")
    func noSocket() throws {
        let lines = try failure([])
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first.map { $0.contains("--socket-path") && $0.contains("--fd") } == true, "\(lines)")
    }

    @Test("LISTEN_FDS meant for another process (LISTEN_PID differs) is ignored: exit 1, no socket")
    func listenFDsForAnotherProcess() throws {
        let tmp = try TemporaryDirectory()
        let listener = try makeListeningSocket(at: "\(tmp.path)/rng.sock")
        let daemon = try DaemonProcess([], environment: ["LISTEN_FDS": "1", "LISTEN_PID": "1", "LISTEN_FDNAMES": "vhost-user"],
                                       descriptors: [3: listener.rawValue])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 1, "\(daemon.diagnostics)")
        #expect(daemon.standardErrorLines.count == 1 && daemon.standardError.contains("no socket"), "\(daemon.diagnostics)")
    }

    @Test("vhost-user-blk refuses a value its option does not take before making anything, naming the values it takes",
          arguments: [(["--null-size", "1M", "--engine", "uring"], "'auto', 'inline', 'io_uring' or 'threads'"),
                      (["--null-size", "1M", "--write-cache", "on"], "'writeback' and 'writethrough'"),
                      (["--null-size", "1M", "--logical-block-size", "1024"], "'512' and '4096'"),
                      (["--null-size", "1Q"], "'1Q' is invalid for '--null-size <size>'")])
    func blockOptionValues(arguments: [String], named: String) throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(product: "vhost-user-blk", ["--socket-path", "\(tmp.path)/blk.sock"] + arguments)
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 64, "\(daemon.diagnostics)")  // EX_USAGE
        #expect(daemon.standardError.contains(named), "\(daemon.diagnostics)")
        #expect(inode(of: "\(tmp.path)/blk.sock") == nil)
    }

    @Test("vhost-user-blk --help lists each value of its enumerated options with what it does, and the default")
    func blockHelpListsValues() throws {
        let daemon = try DaemonProcess(product: "vhost-user-blk", ["--help"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 0, "\(daemon.diagnostics)")
        let help = daemon.standardOutput.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let options = [("--engine <engine>", "auto", ["auto", "inline", "io_uring", "threads"]),
                       ("--write-cache <mode>", "writeback", ["writeback", "writethrough"]),
                       ("--logical-block-size <bytes>", "512", ["512", "4096"]),
                       ("--sandbox <mode>", "seccomp", ["seccomp", "none"])]
        for (option, defaultValue, values) in options {
            let text = try #require(help.range(of: option).map { String(help[$0.upperBound...]) }, "\(option) is missing")
            #expect(text.contains("(default: \(defaultValue))"), "\(option): no default in\n\(daemon.standardOutput)")
            for value in values {
                #expect(text.contains(" \(value) - "), "\(option): \(value) is not listed in\n\(daemon.standardOutput)")
            }
        }
    }

    @Test("--source of a missing file: a non-zero exit and a line naming the path")
    func missingSource() throws {
        let tmp = try TemporaryDirectory()
        let lines = try failure(["--socket-path", "\(tmp.path)/rng.sock", "--source", "/nonexistent"], status: nil)
        #expect(lines.contains { $0.contains("/nonexistent") }, "\(lines)")
        #expect(inode(of: "\(tmp.path)/rng.sock") == nil, "the socket was created although the device could not be")
    }
}
