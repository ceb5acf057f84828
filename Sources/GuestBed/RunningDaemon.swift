// A daemon process started for a guest run, its output collected, stopped through its process group.

import Foundation
import Glibc

/// A daemon process whose output is drained into a log by a reader thread.
/// Sendable by hand (@unchecked): its mutable state is only touched under `condition`.
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
        case .listening:
            throw GuestTestBedError("a daemon listening on \(socket) on its own is not started by the bed")
        }
        if !command[0].contains("/") { command[0] = try findInPath(command[0]) }

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

    /// Waits (up to `timeout`) until the daemon's output has ended, e.g. after it exited, and returns it all.
    func finalLog(timeout: Duration) -> String {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        condition.lock()
        defer { condition.unlock() }
        while !ended && condition.wait(until: deadline) {}
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Sends `signal` to the daemon's process group (nothing once it has been reaped).
    func kill(_ signal: Int32) { process.kill(signal) }

    /// The exit status, or nil when the daemon is still running after `timeout`.
    func waitForExit(timeout: Duration) -> Int32? { process.wait(timeout: timeout) }

    /// SIGTERM to the daemon's process group, then SIGKILL if it has not exited within 5 s.
    func stop() {
        process.kill(SIGTERM)
        if process.wait(timeout: .seconds(5)) == nil {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
        }
    }
}
