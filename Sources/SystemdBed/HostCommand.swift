// A command run to completion on the host, its output captured, under a time limit.

import CVhostUser
import Foundation
import Glibc
import GuestBed

/// What a command printed and how it ended.
public struct CommandResult: Sendable {
    /// The command line, for messages.
    public var command: String
    /// The exit status, or 128 + the signal that ended the command.
    public var status: Int32
    public var output: String
    public var errorOutput: String

    /// Everything the command printed, for messages.
    public var transcript: String {
        "$ \(command)\n\(output)\(errorOutput.isEmpty ? "" : "stderr:\n\(errorOutput)")exit status \(status)"
    }
}

package enum HostCommand {
    /// Runs `argv` (argv[0] a path, or a name in PATH) with stdin from /dev/null and returns its
    /// output once it exits. Throws when it cannot start, or when it runs longer than `timeout`
    /// (it is killed then).
    package static func run(_ argv: [String], timeout: Duration) throws -> CommandResult {
        var command = argv
        if !command[0].contains("/") { command[0] = try findInPath(command[0]) }
        let output = try UnlinkedFile()
        let errorOutput = try UnlinkedFile()
        let process = try ChildProcess(command: command, output: output.fd, errorOutput: errorOutput.fd)
        let commandLine = argv.joined(separator: " ")
        guard let status = process.wait(timeout: timeout) else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
            throw SystemdBedError("`\(commandLine)` did not finish within \(timeout); killed. It printed:\n"
                + tail(output.contents) + "\n" + tail(errorOutput.contents))
        }
        return CommandResult(command: commandLine, status: status, output: output.contents, errorOutput: errorOutput.contents)
    }
}

/// An anonymous file (memfd, close-on-exec from the start) that closes itself: a command's output.
private final class UnlinkedFile {
    let fd: Int32

    init() throws {
        fd = vhu_memfd_create("systemd-bed-output", 0)
        guard fd >= 0 else { throw SystemdBedError("memfd_create: errno \(errno)") }
    }

    deinit { close(fd) }

    var contents: String {
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let count = pread(fd, &chunk, chunk.count, offset)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data += chunk[..<count]
            offset += off_t(count)
        }
        return String(decoding: data, as: UTF8.self)
    }
}
