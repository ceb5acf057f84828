import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// The sandbox every daemon enters once it is set up (Sources/VhostUserCLI/Sandbox.swift), seen from
/// outside through the real `vhost-user-rng`: the kernel's view of its threads, ids and descriptors,
/// and its death by SIGSYS when it makes a forbidden call.
@Suite("the daemon sandbox")
struct SandboxTests {
    /// A daemon on a fresh socket that has printed "listening on" (so it is inside its sandbox).
    private func listeningDaemon(_ arguments: [String] = [], environment: [String: String] = [:],
                                 descriptors: [Int32: Int32] = [:], in tmp: TemporaryDirectory) throws -> (DaemonProcess, String) {
        let path = "\(tmp.path)/rng.sock"
        let daemon = try DaemonProcess(["--socket-path", path] + arguments, environment: environment, descriptors: descriptors)
        try daemon.waitForStandardError(containing: "listening on \(path)")
        return (daemon, path)
    }

    // MARK: The filter

    @Test("a forbidden call kills the daemon with SIGSYS", arguments: ["execve", "inet-socket"])
    func forbiddenCallKills(probe: String) throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(["--socket-path", "\(tmp.path)/rng.sock"], environment: ["VHOST_USER_SANDBOX_PROBE": probe])
        defer { daemon.stop() }
        #expect(daemon.waitForExit(timeout: .seconds(10)) == 128 + SIGSYS, "\(daemon.diagnostics)")
        #expect(daemon.standardError.contains("sandbox: "), "it died before entering the sandbox: \(daemon.diagnostics)")
        #expect(!daemon.standardError.contains("listening on"), "\(daemon.diagnostics)")
    }

    @Test("with --sandbox none the same calls go through, and the daemon serves", arguments: ["execve", "inet-socket"])
    func noSandboxLetsTheCallThrough(probe: String) throws {
        let tmp = try TemporaryDirectory()
        let (daemon, path) = try listeningDaemon(["--sandbox", "none"], environment: ["VHOST_USER_SANDBOX_PROBE": probe], in: tmp)
        defer { daemon.stop() }
        #expect(daemon.standardError.contains("was not filtered"), "\(daemon.diagnostics)")
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("an unknown probe name is a start-up error")
    func unknownProbe() throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(["--socket-path", "\(tmp.path)/rng.sock"], environment: ["VHOST_USER_SANDBOX_PROBE": "fork"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 1, "\(daemon.diagnostics)")
        #expect(daemon.standardErrorLines.count == 1 && daemon.standardError.contains("VHOST_USER_SANDBOX_PROBE=fork"), "\(daemon.diagnostics)")
    }

    @Test("each entropy source and the rate limiter work under the filter, for two front-ends in a row", arguments: [
        [], ["--getrandom"], ["--source", "/dev/random"], ["--max-bytes", "512", "--period-ms", "20"],
    ])
    func rngServesUnderTheFilter(options: [String]) throws {
        let tmp = try TemporaryDirectory()
        let (daemon, path) = try listeningDaemon(options, in: tmp)
        defer { daemon.stop() }
        // With the limit, the second buffer waits for the next period (a worker's timed wait).
        do { try expectServed(try FakeFrontend.connect(to: path), bytes: 512) }
        do { try expectServed(try FakeFrontend.connect(to: path), bytes: 512) }
        #expect(daemon.waitForExit(timeout: .milliseconds(100)) == nil, "\(daemon.diagnostics)")
    }

    @Test("every thread runs under the filter with no_new_privs, also threads started later by a front-end")
    func everyThreadFiltered() throws {
        let tmp = try TemporaryDirectory()
        let (daemon, path) = try listeningDaemon(in: tmp)
        defer { daemon.stop() }
        let served = try expectServed(try FakeFrontend.connect(to: path))  // starts a queue worker thread
        let threads = try threadStatuses(daemon.pid)
        #expect(threads.count >= 3, "main, signal waiter and queue worker at least: \(threads.count)")
        for status in threads {
            #expect(status["Seccomp"] == "2" && status["NoNewPrivs"] == "1", "thread \(status["Pid"] ?? "?"): \(status)")
        }
        withExtendedLifetime(served) {}
    }

    @Test("--sandbox none installs no filter")
    func noSandboxNoFilter() throws {
        let tmp = try TemporaryDirectory()
        let (daemon, _) = try listeningDaemon(["--sandbox", "none"], in: tmp)
        defer { daemon.stop() }
        #expect(try threadStatuses(daemon.pid).allSatisfy { $0["Seccomp"] == "0" })
    }

    @Test("the systemd units let the daemon install its own filter: their SystemCallFilter= allows seccomp and prctl")
    func unitsAllowTheFilter() throws {
        let directory = "\(Binaries.repositoryRoot)/systemd"
        let units = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".service") }
        #expect(!units.isEmpty)
        for unit in units {
            let text = try String(contentsOfFile: "\(directory)/\(unit)", encoding: .utf8)
            let allowed = text.split(separator: "\n").filter { $0.hasPrefix("SystemCallFilter=") && !$0.hasPrefix("SystemCallFilter=~") }
                .flatMap { $0.dropFirst("SystemCallFilter=".count).split(separator: " ").map(String.init) }
            #expect(allowed.contains("@system-service") && allowed.contains("seccomp"), "\(unit): \(allowed)")
        }
        // prctl (no_new_privs) comes with @system-service, through @process; seccomp must be named.
        func members(_ group: String) throws -> [Substring] {
            let analyze = try DaemonProcess(command: ["/usr/bin/systemd-analyze", "syscall-filter", group])
            #expect(analyze.waitForExit(timeout: .seconds(10)) == 0, "\(analyze.diagnostics)")
            return analyze.standardOutput.split(whereSeparator: \.isWhitespace)
        }
        #expect(try members("@system-service").contains("@process"))
        #expect(try members("@process").contains("prctl"))
    }

    // MARK: --user

    @Test("--user nobody: the running daemon has uid and gid 65534 and no groups, and still serves")
    func userNobody() throws {
        try #require(geteuid() == 0, "the tests run as root")
        let tmp = try TemporaryDirectory()
        let (daemon, path) = try listeningDaemon(["--user", "nobody"], in: tmp)
        defer { daemon.stop() }
        for status in try threadStatuses(daemon.pid) {
            #expect(status["Uid"] == "65534\t65534\t65534\t65534", "\(status)")
            #expect(status["Gid"] == "65534\t65534\t65534\t65534", "\(status)")
            #expect(status["Groups"] == "", "\(status)")
            #expect(status["CapEff"] == "0000000000000000" && status["CapPrm"] == "0000000000000000", "\(status)")
        }
        // The socket was made as root before the switch; the front-end is served through it.
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("numbers work like names: --user 65534 (its primary group from the user database), --user 65534 --group 100",
          arguments: [(["--user", "65534"], "65534"), (["--user", "65534", "--group", "100"], "100")])
    func numericUserAndGroup(arguments: [String], gid: String) throws {
        let tmp = try TemporaryDirectory()
        let (daemon, path) = try listeningDaemon(arguments, in: tmp)
        defer { daemon.stop() }
        let status = try threadStatuses(daemon.pid)[0]
        #expect(status["Uid"] == "65534\t65534\t65534\t65534" && status["Gid"] == "\(gid)\t\(gid)\t\(gid)\t\(gid)", "\(status)")
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("--user refusals: exit 1 with one line saying why", arguments: [
        (["--user", "no-such-user-xyz"], "no such user"),
        (["--user", "nobody", "--group", "no-such-group-xyz"], "no such group"),
        (["--user", "root"], "that is root"),
        (["--user", "4242"], "give --group"),
    ])
    func userRefused(arguments: [String], reason: String) throws {
        let tmp = try TemporaryDirectory()
        let socket = "\(tmp.path)/rng.sock"
        let daemon = try DaemonProcess(["--socket-path", socket] + arguments)
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 1, "\(daemon.diagnostics)")
        #expect(daemon.standardErrorLines.count == 1 && daemon.standardError.contains(reason), "\(daemon.diagnostics)")
        #expect(inode(of: socket) == nil, "the socket was created before the user was checked")
    }

    @Test("--user without root: exit 1 and a line saying only root can change user")
    func userWithoutRoot() throws {
        let tmp = try TemporaryDirectory()
        #expect(chmod(tmp.path, 0o777) == 0)
        let daemon = try DaemonProcess(command: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                 try Binaries.path("vhost-user-rng"), "--socket-path", "\(tmp.path)/rng.sock", "--user", "nobody"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 1, "\(daemon.diagnostics)")
        #expect(daemon.standardErrorLines.count == 1 && daemon.standardError.contains("only root can change user"), "\(daemon.diagnostics)")
    }

    @Test("--group without --user is a usage error")
    func groupNeedsUser() throws {
        let daemon = try DaemonProcess(["--socket-path", "/tmp/unused.sock", "--group", "nogroup"])
        defer { daemon.stop() }
        let status = try #require(daemon.waitForExit(), "\(daemon.diagnostics)")
        #expect(status != 0 && status < 128 && daemon.standardError.contains("--group needs --user"), "\(daemon.diagnostics)")
    }

    // MARK: Descriptors

    /// A file the daemon is handed as an inherited descriptor, and its path.
    private func openMarker(in tmp: TemporaryDirectory) throws -> (String, OwnedDescriptor) {
        let path = "\(tmp.path)/inherited-marker"
        let file = OwnedDescriptor(open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600))
        try #require(file.rawValue >= 0)
        return (path, file)
    }

    @Test("an inherited descriptor is closed; the daemon keeps only its socket, its own descriptors and stdio")
    func inheritedDescriptorClosed() throws {
        let tmp = try TemporaryDirectory()
        let (marker, file) = try openMarker(in: tmp)
        let (daemon, path) = try listeningDaemon(descriptors: [7: file.rawValue, 12: file.rawValue], in: tmp)
        defer { daemon.stop() }
        let held = try descriptors(of: daemon.pid)
        #expect(!held.values.contains(marker), "still open: \(held)")
        // Ours, and whatever else the test runner leaks into its children.
        let closed = daemon.standardError.firstMatch(of: /closed (\d+) inherited descriptors/).flatMap { Int($0.1) }
        #expect((closed ?? 0) >= 2, "\(daemon.diagnostics)")
        for (fd, target) in held where fd > 2 {
            // The listening socket, the kit's eventfds and epoll, the entropy source.
            let own = target.hasPrefix("socket:[") || target.hasPrefix("anon_inode:") || target == "/dev/urandom"
            #expect(own, "descriptor \(fd) → \(target)")
        }
        try expectServed(try FakeFrontend.connect(to: path))
    }

    @Test("with --sandbox none, inherited descriptors stay open")
    func noSandboxKeepsDescriptors() throws {
        let tmp = try TemporaryDirectory()
        let (marker, file) = try openMarker(in: tmp)
        let (daemon, _) = try listeningDaemon(["--sandbox", "none"], descriptors: [7: file.rawValue], in: tmp)
        defer { daemon.stop() }
        #expect(try descriptors(of: daemon.pid)[7] == marker)
    }

    @Test("--fd N is adopted, not closed: the daemon serves it")
    func adoptedDescriptorKept() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/rng.sock"
        let listener = try makeListeningSocket(at: path)
        let daemon = try DaemonProcess(["--fd", "9"], descriptors: [9: listener.rawValue, 10: listener.rawValue])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on inherited socket fd 9")
        let held = try descriptors(of: daemon.pid)
        #expect(held[9] != nil && held[10] == nil, "\(held)")
        try expectServed(try FakeFrontend.connect(to: path))
    }
}

/// /proc/PID/task/TID/status of every thread of `pid`, as key → value (tabs kept).
func threadStatuses(_ pid: pid_t) throws -> [[String: String]] {
    let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
    return try tasks.map { tid in
        let text = try String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }
}

/// The open descriptors of `pid` and what they point to.
func descriptors(of pid: pid_t) throws -> [Int32: String] {
    var result: [Int32: String] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
        guard let fd = Int32(name) else { continue }
        result[fd] = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(name)")
    }
    return result
}
