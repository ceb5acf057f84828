// posix_spawn in a process group of its own, waitpid on a thread, signals to the group.

import Foundation
import Glibc

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
