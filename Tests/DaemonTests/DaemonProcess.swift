// A daemon executable of this package run as a real process: inherited descriptors at chosen
// numbers, a controlled environment, stdout and stderr captured, exit status with a timeout.

import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

struct DaemonTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum Binaries {
    /// Where the daemon executables are: `VHOST_USER_BIN_DIR`, else the directory of the running
    /// test binary (under `swift test`, `.build/<triple>/debug`, where `swift build` puts products).
    static var directory: String {
        if let dir = ProcessInfo.processInfo.environment["VHOST_USER_BIN_DIR"], !dir.isEmpty { return dir }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    /// The full path of the product `name`; throws when it has not been built.
    static func path(_ name: String) throws -> String {
        let path = "\(directory)/\(name)"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw DaemonTestError("\(path) does not exist: run `swift build` first (or set VHOST_USER_BIN_DIR)")
        }
        return path
    }

    static let systemdSocketActivate = "/usr/bin/systemd-socket-activate"

    /// The package's root directory (this file is Tests/DaemonTests/DaemonProcess.swift).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
}

/// A temporary directory removed when the value goes away. Short paths: sockets allow 107 bytes.
final class TemporaryDirectory {
    let path: String
    init() throws {
        var template = Array("/tmp/dt-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw DaemonTestError("mkdtemp: errno \(errno)") }
        path = String(cString: made)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A listening unix stream socket the test creates and hands to the daemon (socket activation, --fd).
func makeListeningSocket(at path: String) throws -> OwnedDescriptor {
    try UnixListener(path: path).socket
}

/// The file's inode, or nil when it does not exist.
func inode(of path: String) -> UInt64? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return UInt64(st.st_ino)
}

final class DaemonProcess: @unchecked Sendable {
    let pid: pid_t
    let commandLine: String
    private let condition = NSCondition()
    private var output = [Data(), Data()]  // stdout, stderr
    private var openStreams = 2
    private var exitStatus: Int32?

    /// Starts `command` (argv[0] a full path) in a process group of its own.
    /// - environment: added to this process's environment, from which every systemd variable
    ///   (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*, JOURNAL_STREAM) is removed first.
    /// - descriptors: child descriptor number → descriptor of this process to put there.
    /// - ownPIDVariables: variables set to the child's own pid (LISTEN_PID, WATCHDOG_PID), through
    ///   `sh -c 'export VAR=$$; exec "$0" "$@"'`, which keeps the pid.
    init(command: [String], environment: [String: String] = [:], descriptors: [Int32: Int32] = [:],
         ownPIDVariables: [String] = []) throws {
        var argv = command
        if !ownPIDVariables.isEmpty {
            let exports = ownPIDVariables.map { "\($0)=$$" }.joined(separator: " ")
            argv = ["/bin/sh", "-c", "export \(exports); exec \"$0\" \"$@\""] + command
        }
        commandLine = (ownPIDVariables.map { "\($0)=<pid>" } + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + command)
            .joined(separator: " ")

        var env = ProcessInfo.processInfo.environment.filter { key, _ in
            !(key.hasPrefix("LISTEN_") || key.hasPrefix("WATCHDOG_") || key == "NOTIFY_SOCKET" || key == "JOURNAL_STREAM")
        }
        env.merge(environment) { _, new in new }

        // Every descriptor handed over is first duplicated above the child's numbers (close-on-exec,
        // so concurrent spawns do not inherit it), so no dup2 overwrites another's source.
        var duplicates: [Int32] = []
        defer { duplicates.forEach { close($0) } }
        func high(_ fd: Int32) throws -> Int32 {
            let d = fcntl(fd, F_DUPFD_CLOEXEC, 64)
            guard d >= 0 else { throw DaemonTestError("F_DUPFD_CLOEXEC \(fd): errno \(errno)") }
            duplicates.append(d)
            return d
        }
        var pipes: [(reader: Int32, writer: Int32)] = []
        defer { pipes.forEach { close($0.writer) } }
        for _ in 0..<2 {
            var fds: [Int32] = [-1, -1]
            // A socket pair rather than a pipe: created close-on-exec atomically (Glibc has no pipe2).
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                throw DaemonTestError("socketpair: errno \(errno)")
            }
            pipes.append((fds[0], fds[1]))
        }

        do {
            pid = try spawnInOwnGroup(argv, environment: env.map { "\($0.key)=\($0.value)" }) { actions in
                posix_spawn_file_actions_adddup2(&actions, try high(pipes[0].writer), 1)
                posix_spawn_file_actions_adddup2(&actions, try high(pipes[1].writer), 2)
                for (target, source) in descriptors.sorted(by: { $0.key < $1.key }) {
                    posix_spawn_file_actions_adddup2(&actions, try high(source), target)
                }
            }
        } catch {
            pipes.forEach { close($0.reader) }
            throw DaemonTestError("\(error)")
        }
        let child = pid

        for (index, p) in pipes.enumerated() {
            let reader = p.reader
            Thread.detachNewThread { [self] in
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(reader, &chunk, chunk.count)
                    if n < 0 && errno == EINTR { continue }
                    condition.lock()
                    if n > 0 { output[index].append(contentsOf: chunk[..<n]) } else { openStreams -= 1 }
                    condition.broadcast()
                    condition.unlock()
                    if n <= 0 { break }
                }
                close(reader)
            }
        }
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            condition.lock()
            exitStatus = exitCode(fromWaitStatus: status)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// A package product with `arguments`.
    convenience init(product: String = "vhost-user-rng", _ arguments: [String], environment: [String: String] = [:],
                     descriptors: [Int32: Int32] = [:], ownPIDVariables: [String] = []) throws {
        try self.init(command: [try Binaries.path(product)] + arguments, environment: environment, descriptors: descriptors,
                      ownPIDVariables: ownPIDVariables)
    }

    var standardOutput: String { condition.withLock { String(decoding: output[0], as: UTF8.self) } }
    var standardError: String { condition.withLock { String(decoding: output[1], as: UTF8.self) } }
    /// The non-empty lines of stderr.
    var standardErrorLines: [String] { standardError.split(separator: "\n").map(String.init) }

    /// Waits until a complete stderr line contains `text`; throws (with the log) on timeout or exit.
    func waitForStandardError(containing text: String, timeout: Duration = .seconds(10)) throws {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while true {
            let log = String(decoding: output[1], as: UTF8.self)
            if log.split(separator: "\n", omittingEmptySubsequences: false).dropLast().contains(where: { $0.contains(text) }) { return }
            if exitStatus != nil && openStreams == 0 {
                throw DaemonTestError("\(commandLine) exited (\(exitStatus!)) before printing \"\(text)\"; stderr:\n\(log)")
            }
            if !condition.wait(until: deadline) {
                throw DaemonTestError("\(commandLine) did not print \"\(text)\" within \(timeout); stderr:\n\(log)")
            }
        }
    }

    /// The exit status (128 + signal when killed) once the process has exited and its output has
    /// been read to the end, or nil after `timeout`.
    func waitForExit(timeout: Duration = .seconds(5)) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while exitStatus == nil || openStreams > 0 {
            if !condition.wait(until: deadline) { return nil }
        }
        return exitStatus
    }

    /// Sends `signal` to the process, unless it has been reaped.
    func send(_ signal: Int32) {
        condition.withLock { if exitStatus == nil { _ = kill(pid, signal) } }
    }

    /// Kills the whole process group unless the process already exited, and reaps it. Records an issue
    /// when the process printed a sanitizer report (a sanitized build: `scripts/test-sanitizers`).
    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        condition.withLock { if exitStatus == nil { _ = kill(-pid, SIGKILL) } }
        _ = waitForExit(timeout: .seconds(10))
        if let report = sanitizerReport(in: standardError) ?? sanitizerReport(in: standardOutput) {
            Issue.record("\(commandLine) printed a sanitizer report:\n\(report)", sourceLocation: sourceLocation)
        }
    }

    /// What to print when an expectation about the process fails.
    var diagnostics: String { "\(commandLine)\nstderr:\n\(standardError)" }
}

/// The test's end of NOTIFY_SOCKET: a unix datagram socket that collects sd_notify messages.
final class NotifySocket {
    let path: String
    private let socket: OwnedDescriptor
    /// Every message received so far, in order.
    private(set) var messages: [String] = []

    init(path: String) throws {
        guard path.utf8.count <= UnixListener.maxPathBytes else { throw DaemonTestError("notify socket path too long") }
        let socket = OwnedDescriptor(Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        guard socket.rawValue >= 0 else { throw DaemonTestError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw DaemonTestError("bind \(path): errno \(errno)") }
        self.socket = socket
        self.path = path
    }

    /// Receives one datagram within `milliseconds`, or nil.
    private func receive(milliseconds: Int32) -> String? {
        var p = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, max(0, milliseconds)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(socket.rawValue, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        guard n >= 0 else { return nil }
        let message = String(decoding: buffer[..<n], as: UTF8.self)
        messages.append(message)
        return message
    }

    /// The first message (already received or arriving within `timeout`) that satisfies `predicate`.
    @discardableResult
    func waitFor(_ what: String, timeout: Duration = .seconds(10), where predicate: (String) -> Bool) throws -> String {
        if let found = messages.first(where: predicate) { return found }
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        while true {
            let left = Int32(deadline.timeIntervalSinceNow * 1000)
            guard left > 0 else { break }
            if let m = receive(milliseconds: left), predicate(m) { return m }
        }
        throw DaemonTestError("no sd_notify message with \(what) within \(timeout); received: \(messages)")
    }

    /// Receives until `count` messages satisfy `predicate` or `timeout` passes; returns how many did.
    func count(_ count: Int, within timeout: Duration, where predicate: (String) -> Bool) -> Int {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        while messages.filter(predicate).count < count {
            let left = Int32(deadline.timeIntervalSinceNow * 1000)
            guard left > 0 else { break }
            _ = receive(milliseconds: left)
        }
        return messages.filter(predicate).count
    }
}

extension Duration {
    var seconds: TimeInterval {
        let (s, atto) = components
        return TimeInterval(s) + TimeInterval(atto) / 1e18
    }
}

/// Brings a device up through `frontend` as QEMU does, submits one writable buffer and checks that
/// it comes back used with its full length and not all zeroes (entropy). Returns the connection: kept
/// alive, it keeps its queue running.
@discardableResult
func expectServed(_ frontend: FakeFrontend, bytes: Int = 1024) throws -> ConnectedFrontend {
    let served = try ConnectedFrontend(frontend)
    let buffer = served.memory.allocate(bytes)
    served.queue.submit([.writable(buffer, bytes)])
    served.queue.notifyDevice()
    let used = try served.queue.waitForUsed(1)
    guard used.map(\.length) == [UInt32(bytes)] else {
        throw DaemonTestError("used elements \(used), expected one of \(bytes) bytes")
    }
    guard served.memory.read(buffer, count: bytes).contains(where: { $0 != 0 }) else {
        throw DaemonTestError("the buffer came back all zeroes")
    }
    return served
}
