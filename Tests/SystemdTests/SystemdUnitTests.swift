// The installed units under a real systemd (252, PID 1 of a container booted from a minimal Debian
// root with no Swift toolchain), serving real guests under QEMU on the host through the socket the
// container's systemd listens on. One suite, run one test at a time: each test boots its own
// container with the project installed by `make install DESTDIR=ROOT PREFIX=/usr`.
//
// For every daemon with units in systemd/ (UnitProfile.all):
//   - socket activation: the socket's owner, group and mode; no service until QEMU connects; then
//     READY, STATUS, the dynamic user with no capabilities and both system-call filters, the guest
//     driver working; a reconnection served by the same process; `systemctl stop` while attached;
//     what the options file changes (this file);
//   - the watchdog pinged, and a hung daemon restarted (SystemdUnitTests+Watchdog.swift);
//   - a forbidden system call killing the service (SystemdUnitTests+Sandbox.swift);
// and the installed daemons need only the container's own libraries (SystemdUnitTests+Sandbox.swift).

import Foundation
import Glibc
import GuestBed
import SystemdBed
import Testing

@Suite(SystemdTestsAvailability.trait, .serialized)
struct SystemdUnitTests {
    static let serviceState = ["ActiveState", "SubState", "MainPID", "StatusText", "NRestarts", "Type"]

    @Test(arguments: UnitProfile.all)
    func socketActivatedServiceServesARealGuest(_ profile: UnitProfile) throws {
        // 1. The socket unit listens (`systemctl enable --now`); the service does not run yet.
        let container = try profile.bootInstance()
        defer { Self.expectCleanShutdown(container) }
        print("\(profile): \(try container.systemdVersion())")
        #expect(try container.check(["systemctl", "is-enabled", profile.socket]) == "enabled\n")
        let hostSocket = try Self.expectDocumentedSocket(profile, in: container)
        let idle = try container.properties(of: profile.service, ["ActiveState", "EnvironmentFiles", "ExecStart"])
        #expect(idle["ActiveState"] == "inactive", "the service runs before any connection")
        #expect(idle["EnvironmentFiles"]?.hasPrefix(profile.optionsFile) == true, "the options file: \(idle["EnvironmentFiles"] ?? "none")")
        #expect(idle["ExecStart"]?.contains("$\(profile.optionsVariable)") == true, "ExecStart does not pass \(profile.optionsVariable)")

        // 2. QEMU connects: systemd starts the service, which serves the guest.
        let observed = Observations()
        let first = try Self.runGuest(profile, run: 1, socket: hostSocket) { control in
            try control.waitForLine("@@served", timeout: .seconds(150))
            let serving = try container.waitFor(profile.service, Self.serviceState, timeout: .seconds(30), "serving the guest") {
                $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix(profile.servingStatus) == true
            }
            observed.record("serving", serving)
            observed.record("process", try ProcessStatus.read(pid: serving["MainPID"] ?? "", in: container).fields)
            try control.send("checked")
        }
        print("\(profile) run 1: \(first.elapsed)\n\(first.output)")
        #expect(first.status == 0 && first.output.contains("host=checked"), "guest run 1:\n\(first.output)")
        try profile.checkGuest(1, first.values, first.values, container)

        let serving = observed.values("serving")
        let mainPID = serving["MainPID"] ?? "0"
        #expect(serving["Type"] == "notify" && serving["SubState"] == "running", "\(serving)")  // active: READY=1 arrived
        #expect(mainPID != "0" && serving["NRestarts"] == "0", "\(serving)")
        Self.expectConfined(ProcessStatus(fields: observed.values("process")))

        // 3. QEMU is gone: the same process waits for the next front-end.
        try container.waitFor(profile.service, Self.serviceState, timeout: .seconds(30), "waiting for the next front-end") {
            $0["ActiveState"] == "active" && $0["MainPID"] == mainPID
                && $0["StatusText"] == "front-end disconnected, waiting for the next one"
        }

        // 4. QEMU reconnects and is served by the same process; `systemctl stop` while it is attached.
        @Sendable func stop() throws {
            let start = ContinuousClock.now
            try container.check(["systemctl", "stop", profile.service], timeout: .seconds(120))
            observed.record("stop", ["elapsed": "\((ContinuousClock.now - start).timeInterval)"])
            observed.record("stopped", try container.properties(
                of: profile.service, ["ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec"]))
        }
        let second = try Self.runGuest(profile, run: 2, socket: hostSocket) { control in
            try control.waitForLine("@@served", timeout: .seconds(150))
            observed.record("reconnected", try container.waitFor(profile.service, Self.serviceState, timeout: .seconds(30), "serving the guest again") {
                $0["ActiveState"] == "active" && $0["StatusText"]?.hasPrefix(profile.servingStatus) == true
            })
            if profile.stopsWhileAttached { try stop() }
            try control.send("done")
        }
        if !profile.stopsWhileAttached { try stop() }
        print("\(profile) run 2: \(second.elapsed)\n\(second.output)")
        #expect(second.status == 0 && second.output.contains("host=done"), "guest run 2:\n\(second.output)")
        try profile.checkGuest(2, second.values, first.values, container)
        let reconnected = observed.values("reconnected")
        #expect(reconnected["MainPID"] == mainPID && reconnected["NRestarts"] == "0", "after the reconnection: \(reconnected)")

        // Stopped cleanly (exit status 0, not the stop timeout's SIGKILL) and within a few seconds.
        let stopped = observed.values("stopped")
        let stopSeconds = Double(observed.values("stop")["elapsed"] ?? "") ?? .infinity
        #expect(stopped["ActiveState"] == "inactive" && stopped["Result"] == "success", "after systemctl stop: \(stopped)")
        #expect(stopped["ExecMainCode"] == "1" && stopped["ExecMainStatus"] == "0", "the daemon's exit: \(stopped)")  // CLD_EXITED, 0
        #expect(stopSeconds < 5, "systemctl stop took \(stopSeconds) s (TimeoutStopSec: \(stopped["TimeoutStopUSec"] ?? "?"))")
        print("\(profile): systemctl stop \(profile.stopsWhileAttached ? "with" : "after") the guest took \(stopSeconds) s")
        let journal = container.journal(of: profile.service)
        #expect(!journal.contains("status=31/SYS"), "the system-call filter killed the daemon:\n\(journal)")

        // 5. What the options file changed.
        try profile.checkOptions(container, first.values)
    }

    // MARK: helpers

    /// Checks the socket against what README.md and the unit say (owner root, group kvm, mode 0660,
    /// in a directory of mode 0755) and returns its path on the host.
    static func expectDocumentedSocket(_ profile: UnitProfile, in container: SystemdContainer,
                                       sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        // Listen=/run/vhost-user/rng/vm1.sock (Stream)
        let listen = try container.properties(of: profile.socket, ["Listen"])["Listen"] ?? ""
        let path = String(listen.split(separator: " ").first ?? "")
        guard path.hasPrefix(container.socketsPath + "/") else {
            throw SystemdBedError("\(profile.socket) listens on \"\(listen)\", outside \(container.socketsPath)")
        }
        let hostPath = container.socketsDirectory + path.dropFirst(container.socketsPath.count)
        let kvm = try container.check(["getent", "group", "kvm"]).split(separator: ":")
        var socket = stat()
        var directory = stat()
        guard stat(hostPath, &socket) == 0, stat((hostPath as NSString).deletingLastPathComponent, &directory) == 0 else {
            throw SystemdBedError("\(path) does not exist (\(hostPath) on the host)")
        }
        #expect(socket.st_mode & S_IFMT == S_IFSOCK, "\(path) is not a socket", sourceLocation: sourceLocation)
        #expect(socket.st_uid == 0, "\(path) belongs to uid \(socket.st_uid)", sourceLocation: sourceLocation)
        #expect(kvm.count >= 3 && "\(socket.st_gid)" == kvm[2], "\(path) has gid \(socket.st_gid); group kvm is \(kvm)", sourceLocation: sourceLocation)
        #expect(socket.st_mode & 0o7777 == 0o660, "\(path) has mode \(String(socket.st_mode & 0o7777, radix: 8))", sourceLocation: sourceLocation)
        #expect(directory.st_mode & 0o7777 == 0o755, "its directory has mode \(String(directory.st_mode & 0o7777, radix: 8))", sourceLocation: sourceLocation)
        return hostPath
    }

    /// A process of a hardened unit: a dynamic user's uid (61184-65519), no capabilities in any
    /// set, no network (a namespace of its own), a read-only `/`, no_new_privs, and seccomp
    /// filtering by systemd's filter and the daemon's own.
    static func expectConfined(_ process: ProcessStatus, sourceLocation: SourceLocation = #_sourceLocation) {
        let uids = process.numbers("Uid")
        #expect(uids.count == 4 && Set(uids).count == 1 && (61184...65519).contains(uids[0]),
                "uids \(uids) are not one dynamic user's", sourceLocation: sourceLocation)
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(process.fields[set] == "0000000000000000", "\(set): \(process.fields[set] ?? "none")", sourceLocation: sourceLocation)
        }
        #expect(process.fields["net"] == "private", "the daemon shares the system's network namespace", sourceLocation: sourceLocation)
        #expect(process.fields["root"]?.split(separator: ",").first == "ro", "its / is mounted \(process.fields["root"] ?? "?")", sourceLocation: sourceLocation)
        #expect(process.fields["NoNewPrivs"] == "1", sourceLocation: sourceLocation)
        #expect(process.fields["Seccomp"] == "2", "seccomp mode \(process.fields["Seccomp"] ?? "none")", sourceLocation: sourceLocation)
        #expect((Int(process.fields["Seccomp_filters"] ?? "") ?? 0) >= 2,
                "\(process.fields["Seccomp_filters"] ?? "no") seccomp filters", sourceLocation: sourceLocation)
    }

    /// Boots a guest attached to the unit's socket; its script does the profile's run, prints
    /// `@@served` and waits for the host action's reply (printed as `host=REPLY`).
    static func runGuest(_ profile: UnitProfile, run: Int, socket: String,
                         hostAction: @escaping @Sendable (GuestControl) throws -> Void) throws -> GuestResult {
        let script = profile.guestScript(run) + """

            echo @@served
            read -r reply <&3
            echo "host=$reply"
            """
        let daemon = GuestDaemon(listeningOn: socket, qemuDevice: profile.qemuDevice, qemuDeviceOptions: profile.qemuDeviceOptions)
        return try GuestTestBed.run(daemons: [daemon], modules: profile.modules, script: script, timeout: .seconds(180),
                                    machine: profile.machine, tools: profile.tools, hostAction: hostAction)
    }

    static func expectCleanShutdown(_ container: SystemdContainer, sourceLocation: SourceLocation = #_sourceLocation) {
        let problem = container.shutdown()
        #expect(problem == nil, "\(problem ?? "")", sourceLocation: sourceLocation)
    }
}

/// What a host action saw while the guest ran, for the test to check after the run (a host action
/// runs on a thread of its own).
final class Observations: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String: [String: String]] = [:]

    func record(_ name: String, _ values: [String: String]) {
        lock.lock()
        recorded[name] = values
        lock.unlock()
    }

    func values(_ name: String) -> [String: String] {
        lock.lock()
        defer { lock.unlock() }
        return recorded[name] ?? [:]
    }
}

/// /proc/PID/status of a process in the container, and two more fields: `net` (whether its network
/// namespace is the container's own, `shared`, or `private`) and `root` (the options of its `/` mount).
struct ProcessStatus {
    var fields: [String: String]

    static func read(pid: String, in container: SystemdContainer) throws -> ProcessStatus {
        let text = try container.check(["cat", "/proc/\(pid)/status"])
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let namespaces = try container.check(["readlink", "/proc/1/ns/net", "/proc/\(pid)/ns/net"]).split(separator: "\n")
        fields["net"] = namespaces.count == 2 && namespaces[0] != namespaces[1] ? "private" : "shared"
        // mountinfo: ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS ...; the last mount on / counts.
        let mounts = try container.check(["cat", "/proc/\(pid)/mountinfo"]).split(separator: "\n")
            .map { $0.split(separator: " ") }.filter { $0.count > 5 && $0[4] == "/" }
        fields["root"] = mounts.last.map { String($0[5]) } ?? "none"
        return ProcessStatus(fields: fields)
    }

    /// A field's whitespace-separated numbers (e.g. the four uids of `Uid`).
    func numbers(_ field: String) -> [Int] {
        (fields[field] ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }
    }
}
