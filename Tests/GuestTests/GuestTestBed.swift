// The real-guest test bed: an unmodified QEMU boots Debian's kernel with a busybox initramfs,
// attached to vhost-user daemons, and runs a shell script inside the guest.
//
// Each device test only supplies its daemons, the kernel modules its driver needs and a guest
// script; the script's output and exit status come back through the guest's second serial port.
// The kernel and modules come from scripts/prepare-guest (see GuestCache).
//
//     let result = try GuestTestBed.run(
//         daemons: [GuestDaemon(executable: "vhost-user-rng", qemuDevice: "vhost-user-rng-pci")],
//         modules: ["virtio_rng"],
//         script: "head -c 4096 /dev/hwrng | wc -c",
//         timeout: .seconds(120))
//     #expect(result.status == 0)
//
// Guests run one at a time; a boot to the script takes about 3-4 s under TCG.

import Foundation
import Glibc
import Testing

/// A vhost-user backend that one QEMU device is attached to.
struct GuestDaemon: Sendable {
    /// How the backend process is started.
    enum Launch: Sendable {
        /// A product of this package, located in `GuestTestBed.binaryDirectory`; the bed adds
        /// `--socket-path SOCKET` before the arguments.
        case product(String)
        /// A full command line; each argument's `{socket}` is replaced by the socket path.
        case command([String])
    }

    var launch: Launch
    /// Arguments after `--socket-path SOCKET` (only for `.product`).
    var arguments: [String] = []
    /// The QEMU device, e.g. `vhost-user-rng-pci`.
    var qemuDevice: String
    /// Appended to the `-device` option, e.g. `,num-queues=2`.
    var qemuDeviceOptions: String = ""
    /// The line on the daemon's stderr (or stdout) that says it is ready; `{socket}` is replaced.
    var readinessLine: String = "listening on {socket}"

    /// A daemon of this package: `executable --socket-path SOCKET arguments...`.
    init(executable: String, arguments: [String] = [], qemuDevice: String, qemuDeviceOptions: String = "") {
        self.launch = .product(executable)
        self.arguments = arguments
        self.qemuDevice = qemuDevice
        self.qemuDeviceOptions = qemuDeviceOptions
    }

    /// Any backend, started with a full command line, ready when it prints `readinessLine`.
    init(command: [String], readinessLine: String, qemuDevice: String, qemuDeviceOptions: String = "") {
        self.launch = .command(command)
        self.readinessLine = readinessLine
        self.qemuDevice = qemuDevice
        self.qemuDeviceOptions = qemuDeviceOptions
    }
}

/// What a guest run produced.
struct GuestResult: Sendable {
    /// Everything the guest script wrote to stdout and stderr (carriage returns removed).
    var output: String
    /// The guest script's exit status.
    var status: Int32
    /// The guest kernel's console (first serial port), for diagnostics.
    var consoleLog: String
    /// What each daemon printed, in the order of `daemons`.
    var daemonLogs: [String]
}

struct GuestTestBedError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum GuestTestBed {
    /// False when `VHOST_USER_SKIP_GUEST_TESTS=1`: the guest tests are then disabled.
    static let enabled = ProcessInfo.processInfo.environment["VHOST_USER_SKIP_GUEST_TESTS"] != "1"

    /// Where the daemon executables are: `VHOST_USER_BIN_DIR`, else the directory of the running
    /// test binary (under `swift test`, `.build/<triple>/debug`, where `swift build` puts products).
    static var binaryDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["VHOST_USER_BIN_DIR"], !dir.isEmpty {
            return dir
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    static let qemu = "qemu-system-x86_64"

    /// One guest at a time: the machine has two cores and TCG is CPU bound.
    private static let guestLock = NSLock()

    /// Boots a guest attached to `daemons`, loads `modules` (and their dependencies), runs
    /// `script` with `sh` and returns its output and exit status.
    ///
    /// `timeout` bounds each daemon's start and the whole QEMU run; QEMU is killed when it expires
    /// (it blocks forever when a daemon accepts the connection but never answers).
    static func run(
        daemons: [GuestDaemon], modules: [String], script: String, timeout: Duration
    ) throws -> GuestResult {
        guestLock.lock()
        defer { guestLock.unlock() }

        let cache = try GuestCache.locate()
        let initramfsModules = try cache.resolve(modules)

        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("guest-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }

        var running: [RunningDaemon] = []
        defer { running.forEach { $0.stop() } }
        for (index, daemon) in daemons.enumerated() {
            let socket = "\(tmp)/\(index).sock"
            let process = try RunningDaemon.start(daemon, socket: socket)
            running.append(process)
            try process.waitUntilReady(
                line: daemon.readinessLine.replacingOccurrences(of: "{socket}", with: socket),
                timeout: timeout)
        }

        let nonce = UUID().uuidString
        let initramfs = "\(tmp)/initramfs.cpio"
        try Initramfs.build(
            modules: initramfsModules, script: script, nonce: nonce
        ).write(to: URL(fileURLWithPath: initramfs))

        let consolePath = "\(tmp)/console.log"
        let outputPath = "\(tmp)/output.log"
        var arguments = [
            "-accel", "tcg", "-cpu", "max",
            "-machine", "q35,memory-backend=mem",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-m", "512M",
            "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", "file:\(consolePath)", "-serial", "file:\(outputPath)",
            "-kernel", cache.kernel, "-initrd", initramfs,
            "-append", "console=ttyS0 panic=-1",
        ]
        for (index, daemon) in daemons.enumerated() {
            arguments += [
                "-chardev", "socket,id=c\(index),path=\(tmp)/\(index).sock",
                "-device", "\(daemon.qemuDevice),chardev=c\(index)\(daemon.qemuDeviceOptions)",
            ]
        }

        let qemuLogPath = "\(tmp)/qemu.log"
        let exit = try runQEMU(arguments: arguments, logPath: qemuLogPath, timeout: timeout)

        let console = readText(consolePath)
        let rawOutput = readText(outputPath).replacingOccurrences(of: "\r", with: "")
        func failure(_ what: String) -> GuestTestBedError {
            var text = "\(what)\nQEMU: \(qemu) \(arguments.joined(separator: " "))\n"
            text += "QEMU output:\n\(tail(readText(qemuLogPath)))\n"
            text += "guest console (tail):\n\(tail(console))\n"
            text += "guest output:\n\(tail(rawOutput))\n"
            for (index, daemon) in running.enumerated() {
                text += "daemon \(index) (\(daemon.commandLine)) log:\n\(tail(daemon.log))\n"
            }
            return GuestTestBedError(text)
        }
        switch exit {
        case .timedOut:
            let hint = console.isEmpty ? " (the guest never started: QEMU may be waiting for a daemon's reply)" : ""
            throw failure("QEMU did not finish within \(timeout); killed\(hint)")
        case .exited(let code) where code != 0:
            throw failure("QEMU exited with status \(code)")
        case .exited:
            break
        }
        guard let parsed = Initramfs.parseOutput(rawOutput, nonce: nonce) else {
            throw failure("the guest output has no complete result markers")
        }
        return GuestResult(
            output: parsed.output, status: parsed.status, consoleLog: console,
            daemonLogs: running.map(\.log))
    }

    private enum QEMUExit { case exited(Int32), timedOut }

    private static func runQEMU(arguments: [String], logPath: String, timeout: Duration) throws -> QEMUExit {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw GuestTestBedError("cannot create \(logPath): errno \(errno)") }
        defer { close(log) }
        let process = try ChildProcess(command: [try findInPath(qemu)] + arguments, output: log)
        guard let status = process.wait(timeout: timeout) else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
            return .timedOut
        }
        return .exited(status)
    }

    static func findInPath(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw GuestTestBedError("\(name) is not installed: run scripts/install-deps && scripts/prepare-guest")
    }
}

/// The kernel and modules that scripts/prepare-guest leaves in
/// `${VHOST_USER_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-user-devices/guest}`.
struct GuestCache {
    var directory: String
    var version: String
    var kernel: String { "\(directory)/kernel" }
    var modulesDirectory: String { "\(directory)/modules/\(version)" }

    static var directory: String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["VHOST_USER_GUEST_CACHE"], !dir.isEmpty { return dir }
        let cacheHome = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "\(env["HOME"] ?? NSHomeDirectory())/.cache"
        return "\(cacheHome)/vhost-user-devices/guest"
    }

    static func locate() throws -> GuestCache {
        let dir = directory
        guard let stamp = try? String(contentsOfFile: "\(dir)/ready", encoding: .utf8),
            let version = stamp.split(separator: "\n").first.map(String.init), !version.isEmpty,
            FileManager.default.fileExists(atPath: "\(dir)/kernel")
        else {
            throw GuestTestBedError(
                "no guest kernel in \(dir): run scripts/install-deps && scripts/prepare-guest "
                    + "(or set VHOST_USER_SKIP_GUEST_TESTS=1 to skip the guest tests)")
        }
        return GuestCache(directory: dir, version: version)
    }

    /// The modules' files with their dependencies, in load order (dependencies first), from
    /// modules.dep. Names may use `-` or `_`; built-in modules are left out.
    func resolve(_ names: [String]) throws -> [String] {
        func key(_ name: String) -> String {
            var base = (name as NSString).lastPathComponent
            for suffix in [".xz", ".zst", ".gz", ".ko"] where base.hasSuffix(suffix) {
                base.removeLast(suffix.count)
            }
            return base.replacingOccurrences(of: "-", with: "_")
        }
        let depText = readText("\(modulesDirectory)/modules.dep")
        var paths: [String: String] = [:]
        var dependencies: [String: [String]] = [:]
        for line in depText.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let path = parts.first.map(String.init) else { continue }
            let deps = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
            paths[key(path)] = path
            dependencies[key(path)] = deps.map(key)
        }
        let builtin = Set(readText("\(modulesDirectory)/modules.builtin").split(separator: "\n").map { key(String($0)) })

        var ordered: [String] = []
        var visited: Set<String> = []
        func visit(_ name: String) throws {
            guard !visited.contains(name) else { return }
            visited.insert(name)
            guard let path = paths[name] else {
                if builtin.contains(name) { return }
                throw GuestTestBedError(
                    "module \(name) is not in \(modulesDirectory)/modules.dep: add it to MODULES in "
                        + "scripts/prepare-guest and run it again")
            }
            for dep in dependencies[name] ?? [] { try visit(dep) }
            ordered.append("\(modulesDirectory)/\(path)")
        }
        for name in names { try visit(key(name)) }
        return ordered
    }
}

/// A daemon process whose output is drained into a log by a reader thread.
final class RunningDaemon: @unchecked Sendable {
    let commandLine: String
    private let process: ChildProcess
    private let condition = NSCondition()
    private var buffer = Data()
    private var ended = false

    private init(process: ChildProcess, commandLine: String) {
        self.process = process
        self.commandLine = commandLine
    }

    var log: String {
        condition.lock()
        defer { condition.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }

    static func start(_ daemon: GuestDaemon, socket: String) throws -> RunningDaemon {
        var command: [String]
        switch daemon.launch {
        case .product(let name):
            let path = "\(GuestTestBed.binaryDirectory)/\(name)"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw GuestTestBedError(
                    "daemon \(path) does not exist: run `swift build` first (or set VHOST_USER_BIN_DIR)")
            }
            command = [path, "--socket-path", socket] + daemon.arguments
        case .command(let full):
            command = full.map { $0.replacingOccurrences(of: "{socket}", with: socket) }
        }
        if !command[0].contains("/") { command[0] = try GuestTestBed.findInPath(command[0]) }

        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw GuestTestBedError("pipe: errno \(errno)") }
        let (reader, writer) = (fds[0], fds[1])
        _ = fcntl(reader, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writer, F_SETFD, FD_CLOEXEC)
        let process: ChildProcess
        do {
            process = try ChildProcess(command: command, output: writer)
        } catch {
            close(reader)
            close(writer)
            throw error
        }
        close(writer)
        let running = RunningDaemon(process: process, commandLine: command.joined(separator: " "))
        Thread.detachNewThread {
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(reader, &chunk, chunk.count)
                if count < 0 && errno == EINTR { continue }
                running.condition.lock()
                if count > 0 { running.buffer.append(contentsOf: chunk[..<count]) } else { running.ended = true }
                running.condition.broadcast()
                running.condition.unlock()
                if count <= 0 { break }
            }
            close(reader)
        }
        return running
    }

    /// Waits until the daemon prints `line` (as part of a line of its output).
    func waitUntilReady(line: String, timeout: Duration) throws {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        condition.lock()
        defer { condition.unlock() }
        while true {
            let text = String(decoding: buffer, as: UTF8.self)
            if text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().contains(where: { $0.contains(line) }) {
                return
            }
            if ended {
                throw GuestTestBedError("daemon \(commandLine) exited before printing \"\(line)\"; its output:\n\(tail(text))")
            }
            if !condition.wait(until: deadline) {
                throw GuestTestBedError("daemon \(commandLine) did not print \"\(line)\" within \(timeout); its output:\n\(tail(text))")
            }
        }
    }

    /// SIGTERM to the daemon's process group, then SIGKILL if it has not exited within 5 s.
    func stop() {
        process.kill(SIGTERM)
        if process.wait(timeout: .seconds(5)) == nil {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
        }
    }
}

/// A child process in a process group of its own, with stdin from /dev/null and stdout and stderr
/// to `output`. (Foundation's `Process` on Linux reports an exit only once every descendant has
/// closed an inherited descriptor, and cannot signal a process group.)
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let exited = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var exitStatus: Int32?

    init(command: [String], output: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw GuestTestBedError("cannot start \(command[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            while waitpid(self.pid, &status, 0) < 0 && errno == EINTR {}
            lock.lock()
            // Exit code, or 128 + the signal that ended it.
            exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            lock.unlock()
            exited.signal()
        }
    }

    /// The exit status, or nil when the process is still running after `timeout` (nil: forever).
    func wait(timeout: Duration?) -> Int32? {
        lock.lock()
        if let status = exitStatus {
            lock.unlock()
            return status
        }
        lock.unlock()
        if let timeout {
            guard exited.wait(timeout: .now() + timeout.timeInterval) == .success else { return nil }
        } else {
            exited.wait()
        }
        exited.signal()  // for later callers
        lock.lock()
        defer { lock.unlock() }
        return exitStatus
    }

    /// Sends `signal` to the whole process group, unless the process has been reaped.
    func kill(_ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if exitStatus == nil { _ = Glibc.kill(-pid, signal) }
    }
}

/// The guest's initramfs: busybox, the kernel modules, an /init and the test script.
enum Initramfs {
    static let busybox = "/bin/busybox"

    static func beginMarker(_ nonce: String) -> String { "<<<guest-output \(nonce)>>>" }
    static func endMarker(_ nonce: String) -> String { "<<<guest-status \(nonce) " }

    /// `/init`: mounts, loads the modules in order, runs /test.sh with its output between markers on
    /// /dev/ttyS1, and powers off.
    static func initScript(modules: [String], nonce: String) -> String {
        let inserts = modules.map { "insmod \($0) || { echo \"init: insmod \($0) failed\"; exit 125; }" }
        return """
            #!/bin/sh
            mount -t proc proc /proc
            mount -t sysfs sysfs /sys
            mount -t devtmpfs devtmpfs /dev
            mount -t tmpfs tmpfs /tmp
            stty -F /dev/ttyS1 raw -echo 2>/dev/null
            out=/dev/ttyS1
            echo '\(beginMarker(nonce))' > $out
            (
            \(inserts.joined(separator: "\n"))
            cd /tmp
            exec sh /test.sh
            ) > $out 2>&1 < /dev/null
            status=$?
            echo > $out
            echo '\(endMarker(nonce))'$status'>>>' > $out
            sync
            poweroff -f

            """
    }

    /// The text between the markers and the status, or nil when the markers are incomplete.
    /// (/init writes a newline after the script's output so that the end marker starts a line.)
    static func parseOutput(_ text: String, nonce: String) -> (output: String, status: Int32)? {
        let begin = beginMarker(nonce) + "\n"
        let end = "\n" + endMarker(nonce)
        guard let b = text.range(of: begin),
            let e = text.range(of: end, range: b.upperBound..<text.endIndex),
            let close = text.range(of: ">>>", range: e.upperBound..<text.endIndex),
            let status = Int32(text[e.upperBound..<close.lowerBound])
        else { return nil }
        return (String(text[b.upperBound..<e.lowerBound]), status)
    }

    static func build(modules: [String], script: String, nonce: String) throws -> Data {
        var archive = CPIOArchive()
        for dir in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "modules"] {
            archive.directory(dir)
        }
        archive.characterDevice("dev/console", major: 5, minor: 1)
        archive.file("bin/busybox", contents: try Data(contentsOf: URL(fileURLWithPath: busybox)), mode: 0o755)
        for applet in try busyboxApplets() where applet != "bin/busybox" {
            archive.symlink(applet, target: "/bin/busybox")
        }
        var guestModules: [String] = []
        for (index, path) in modules.enumerated() {
            let name = "modules/\(index)-\((path as NSString).lastPathComponent)"
            archive.file(name, contents: try Data(contentsOf: URL(fileURLWithPath: path)), mode: 0o644)
            guestModules.append("/" + name)
        }
        archive.file("init", contents: Data(initScript(modules: guestModules, nonce: nonce).utf8), mode: 0o755)
        archive.file("test.sh", contents: Data(script.utf8), mode: 0o755)
        return archive.finish()
    }

    /// The applets' paths (e.g. `bin/sh`, `usr/bin/sha256sum`) from `busybox --list-full`.
    static func busyboxApplets() throws -> [String] {
        guard FileManager.default.isExecutableFile(atPath: busybox) else {
            throw GuestTestBedError("\(busybox) is missing: run scripts/install-deps (busybox-static)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: busybox)
        process.arguments = ["--list-full"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

/// A cpio archive in the "newc" format the kernel unpacks as initramfs.
struct CPIOArchive {
    private var data = Data()
    private var inode: UInt32 = 1

    mutating func directory(_ name: String) { entry(name, mode: 0o040755, contents: Data()) }
    mutating func file(_ name: String, contents: Data, mode: UInt32) { entry(name, mode: 0o100000 | mode, contents: contents) }
    mutating func symlink(_ name: String, target: String) { entry(name, mode: 0o120777, contents: Data(target.utf8)) }
    mutating func characterDevice(_ name: String, major: UInt32, minor: UInt32) {
        entry(name, mode: 0o020600, contents: Data(), rdev: (major, minor))
    }

    mutating func finish() -> Data {
        entry("TRAILER!!!", mode: 0, contents: Data(), isTrailer: true)
        return data
    }

    private mutating func entry(
        _ name: String, mode: UInt32, contents: Data, rdev: (UInt32, UInt32) = (0, 0), isTrailer: Bool = false
    ) {
        let nameBytes = Data(name.utf8) + [0]
        let fields: [UInt32] = [
            isTrailer ? 0 : inode, mode, 0, 0, 1, 0, UInt32(contents.count),
            0, 0, rdev.0, rdev.1, UInt32(nameBytes.count), 0,
        ]
        inode += 1
        data.append(contentsOf: "070701".utf8)
        for field in fields { data.append(contentsOf: String(format: "%08X", field).utf8) }
        data.append(nameBytes)
        pad()
        data.append(contents)
        pad()
    }

    private mutating func pad() {
        while data.count % 4 != 0 { data.append(0) }
    }
}

func readText(_ path: String) -> String {
    guard let data = FileManager.default.contents(atPath: path) else { return "" }
    return String(decoding: data, as: UTF8.self)
}

/// The last `lines` lines of `text`.
func tail(_ text: String, lines: Int = 40) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
