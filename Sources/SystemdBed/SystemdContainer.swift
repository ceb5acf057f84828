// A booted systemd container: systemd as PID 1 of its own root (an overlay of the cached root),
// started with systemd-nspawn, commands run inside with nsenter.
//
//     let container = try SystemdContainer.boot { root in try Installation.makeInstall(into: root) }
//     defer { if let problem = container.shutdown() { Issue.record(...) } }
//     try container.check(["systemctl", "enable", "--now", "vhost-user-rng@vm1.socket"])
//     // the socket appears in container.socketsDirectory on the host: QEMU connects there
//
// Never boots systemd on the host's own root: its start-up would empty the host's /tmp and start
// the image's services. The flags are the ones that work without a host systemd, D-Bus or
// machined (--register=no --keep-unit); nspawn runs in cgroups of the container's own.

import Foundation
import Glibc
import GuestBed

/// A running container (see the file comment). `shutdown()` stops it and removes every trace.
public final class SystemdContainer: @unchecked Sendable {
    /// The machine name (and host name) of the container.
    public let name: String
    /// The container's `/` as the host sees it. Writes land in the container's own layer; the
    /// cached root below stays as it was.
    public let root: String
    /// The host directory that the container sees as `socketsPath`: the units' sockets appear here.
    public let socketsDirectory: String
    /// Where the container sees `socketsDirectory`.
    public let socketsPath: String
    /// The host's pid of the container's PID 1 (systemd).
    public let leader: pid_t

    private let teardown: Teardown
    private let nspawn: ChildProcess
    private let logPath: String

    private init(name: String, root: String, socketsDirectory: String, socketsPath: String, leader: pid_t,
                 teardown: Teardown, nspawn: ChildProcess, logPath: String) {
        self.name = name
        self.root = root
        self.socketsDirectory = socketsDirectory
        self.socketsPath = socketsPath
        self.leader = leader
        self.teardown = teardown
        self.nspawn = nspawn
        self.logPath = logPath
    }

    /// Boots a container on an overlay of the cached root (`SystemdRoot`). `install` runs first with
    /// the container's root directory (e.g. `make install DESTDIR=root`); `socketsPath` in the
    /// container is bound to `socketsDirectory` on the host. Returns once systemd says the system is
    /// running; throws (having removed what it made) when it is degraded or not up within `timeout`.
    public static func boot(socketsPath: String = "/run/vhost-user", timeout: Duration = .seconds(60),
                            install: (_ root: String) throws -> Void) throws -> SystemdContainer {
        let base = try SystemdRoot.locate()
        let teardown = Teardown()
        do {
            var template = Array("/tmp/vhu-systemd-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw SystemdBedError("mkdtemp: errno \(errno)") }
            let directory = String(cString: made)
            let name = "vhu-" + (directory as NSString).lastPathComponent.replacingOccurrences(of: "vhu-systemd-", with: "").lowercased()
            teardown.add { try? FileManager.default.removeItem(atPath: directory); return nil }

            let (root, sockets, logPath) = ("\(directory)/root", "\(directory)/sockets", "\(directory)/nspawn.log")
            for path in ["upper", "work", "root", "sockets"] {
                try FileManager.default.createDirectory(atPath: "\(directory)/\(path)", withIntermediateDirectories: false)
            }
            let options = "lowerdir=\(base.path),upperdir=\(directory)/upper,workdir=\(directory)/work"
            guard mount("overlay", root, "overlay", 0, options) == 0 else {
                throw SystemdBedError("mounting an overlay of \(base.path) on \(root): \(String(cString: strerror(errno)))")
            }
            teardown.add {
                guard umount2(root, 0) != 0 else { return nil }
                let error = errno
                umount2(root, Int32(MNT_DETACH))
                return "unmounting \(root): \(String(cString: strerror(error))) (detached)"
            }

            try install(root)

            let cgroups = try ContainerCgroups(name: "vhost-user-systemd-bed-\(name)")
            teardown.add { cgroups.remove() }
            let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard log >= 0 else { throw SystemdBedError("cannot create \(logPath): errno \(errno)") }
            defer { close(log) }
            let nspawnCommand = [
                "exec", "systemd-nspawn", "--machine=\(name)", "--directory=\(root)", "--boot",
                "--register=no", "--keep-unit", "--private-network", "--link-journal=no",
                "--console=read-only", "--bind=\(sockets):\(socketsPath)",
            ].joined(separator: " ")
            let nspawn = try ChildProcess(command: ["/bin/sh", "-c", "\(cgroups.joinCommand) && \(nspawnCommand)"], output: log)
            teardown.add { Self.stop(nspawn, cgroups: cgroups) }

            let deadline = ContinuousClock.now + timeout
            let leader = try waitForLeader(of: nspawn, until: deadline, logPath: logPath)
            let container = SystemdContainer(name: name, root: root, socketsDirectory: sockets, socketsPath: socketsPath,
                                             leader: leader, teardown: teardown, nspawn: nspawn, logPath: logPath)
            try container.waitUntilRunning(until: deadline)
            return container
        } catch {
            let problems = teardown.run()
            throw SystemdBedError("\(error)" + (problems.map { "\nand cleaning up: \($0)" } ?? ""))
        }
    }

    /// The container's PID 1: nspawn's child that is pid 1 in its own pid namespace.
    private static func waitForLeader(of nspawn: ChildProcess, until deadline: ContinuousClock.Instant, logPath: String) throws -> pid_t {
        while true {
            let children = readText("/proc/\(nspawn.pid)/task/\(nspawn.pid)/children").split(separator: " ").compactMap { pid_t($0) }
            for child in children {
                let status = readText("/proc/\(child)/status")
                if let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }),
                    line.split(whereSeparator: { $0 == "\t" || $0 == " " }).last == "1" {
                    return child
                }
            }
            if let status = nspawn.wait(timeout: .milliseconds(50)) {
                throw SystemdBedError("systemd-nspawn exited with status \(status) before the container started:\n\(tail(readText(logPath)))")
            }
            guard ContinuousClock.now < deadline else {
                throw SystemdBedError("the container's systemd did not start in time:\n\(tail(readText(logPath)))")
            }
        }
    }

    /// Polls `systemctl is-system-running` (it fails until PID 1 accepts connections) until the
    /// system is running.
    private func waitUntilRunning(until deadline: ContinuousClock.Instant) throws {
        var last = ""
        while true {
            let result = try run(["systemctl", "is-system-running"], timeout: .seconds(30))
            last = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            switch last {
            case "running":
                return
            case "degraded":
                let failed = (try? run(["systemctl", "--failed", "--no-legend"]))?.output ?? ""
                throw SystemdBedError("the container booted degraded; failed units:\n\(failed)\nconsole:\n\(tail(readText(logPath)))")
            default:
                break
            }
            if let status = nspawn.wait(timeout: .milliseconds(100)) {
                throw SystemdBedError("systemd-nspawn exited with status \(status) while the container booted:\n\(tail(readText(logPath)))")
            }
            guard ContinuousClock.now < deadline else {
                throw SystemdBedError("the container is not running in time (systemctl is-system-running: \(last)):\n\(tail(readText(logPath)))")
            }
        }
    }

    /// SIGTERM to nspawn (not to its process group: the container's systemd would take it as a
    /// request to re-execute itself), which shuts the container down; SIGKILL to everything in
    /// its cgroups when that takes more than a minute.
    private static func stop(_ nspawn: ChildProcess, cgroups: ContainerCgroups) -> String? {
        if nspawn.wait(timeout: .zero) == nil { kill(nspawn.pid, SIGTERM) }
        if nspawn.wait(timeout: .seconds(60)) != nil { return nil }
        cgroups.killAll()
        nspawn.kill(SIGKILL)
        _ = nspawn.wait(timeout: nil)
        return "the container did not shut down within 60 s of SIGTERM; killed"
    }

    /// Stops the container and removes its cgroups, overlay and files. Returns what could not be
    /// cleaned up, or nil. Later calls do nothing.
    @discardableResult
    public func shutdown() -> String? { teardown.run() }

    /// The console output so far (systemd's boot and shutdown messages).
    public var console: String { readText(logPath) }

    /// Runs `command` inside the container (all its namespaces, a clean environment) and returns
    /// its output and status; throws only when it cannot run or takes longer than `timeout`.
    public func run(_ command: [String], timeout: Duration = .seconds(30)) throws -> CommandResult {
        let environment = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat"]
        var result = try HostCommand.run(["nsenter", "-t", "\(leader)", "-a"] + environment + command, timeout: timeout)
        result.command = command.joined(separator: " ")
        return result
    }

    /// Runs `command` inside the container and returns its output; throws when it fails.
    @discardableResult
    public func check(_ command: [String], timeout: Duration = .seconds(30)) throws -> String {
        let result = try run(command, timeout: timeout)
        guard result.status == 0 else { throw SystemdBedError("in the container:\n\(result.transcript)") }
        return result.output
    }

    /// Runs a shell script inside the container and returns its output; throws when it fails.
    @discardableResult
    public func shell(_ script: String, timeout: Duration = .seconds(30)) throws -> String {
        try check(["sh", "-c", script], timeout: timeout)
    }

    /// Writes `contents` to `path` inside the container (creating its directory), with `mode`.
    public func write(_ contents: String, to path: String, mode: Int = 0o644) throws {
        let hostPath = root + path
        try FileManager.default.createDirectory(atPath: (hostPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try contents.write(toFile: hostPath, atomically: false, encoding: .utf8)
        guard chmod(hostPath, mode_t(mode)) == 0 else { throw SystemdBedError("chmod \(hostPath): errno \(errno)") }
    }
}

/// Clean-up steps, run once in reverse order; each returns a problem or nil.
private final class Teardown: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [() -> String?] = []

    func add(_ step: @escaping () -> String?) {
        lock.lock()
        steps.append(step)
        lock.unlock()
    }

    func run() -> String? {
        lock.lock()
        let pending = steps.reversed()
        steps = []
        lock.unlock()
        let problems = pending.compactMap { $0() }
        return problems.isEmpty ? nil : problems.joined(separator: "\n")
    }
}

extension SystemdContainer {
    /// Why containers cannot boot on this machine, or nil when they can: they need root, the tools
    /// (systemd-nspawn, nsenter, make), overlayfs and cgroups of their own.
    public static var unavailableReason: String? {
        if geteuid() != 0 { return "the systemd bed needs root (overlay mounts, cgroups, systemd-nspawn)" }
        for tool in ["systemd-nspawn", "nsenter", "make"] where (try? findInPath(tool)) == nil {
            return "\(tool) is not installed: run scripts/install-deps"
        }
        if !readText("/proc/filesystems").contains("\toverlay\n") {
            return "the kernel has no overlay file system (containers boot on an overlay of the cached root)"
        }
        do {
            let probe = try ContainerCgroups(name: "vhost-user-systemd-bed-probe-\(getpid())")
            if let problem = probe.remove() { return "cannot remove a cgroup here: \(problem)" }
        } catch {
            return "cannot create cgroups for a container here: \(error)"
        }
        return nil
    }
}
