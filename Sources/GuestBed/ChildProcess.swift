// posix_spawn in a process group of its own, waitpid on a thread, signals to the group.

import Foundation
import Glibc
import VhostUserTesting

/// A child process in a process group of its own, with stdin from /dev/null, stdout to `output`
/// and stderr to `errorOutput` (default: `output` too). (Foundation's `Process` on Linux reports an
/// exit only once every descendant has closed an inherited descriptor, and cannot signal a process
/// group.) Package-wide: the systemd bed runs its commands with it too.
/// Sendable by hand (@unchecked): `exitStatus` is only touched under `lock`.
package final class ChildProcess: @unchecked Sendable {
    package let pid: pid_t
    private let exited = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var exitStatus: Int32?

    package init(command: [String], output: Int32, errorOutput: Int32? = nil) throws {
        do {
            pid = try spawnInOwnGroup(command) { actions in
                posix_spawn_file_actions_adddup2(&actions, output, 1)
                posix_spawn_file_actions_adddup2(&actions, errorOutput ?? output, 2)
            }
        } catch {
            throw GuestTestBedError("\(error)")
        }
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            while waitpid(self.pid, &status, 0) < 0 && errno == EINTR {}
            lock.lock()
            exitStatus = exitCode(fromWaitStatus: status)
            lock.unlock()
            exited.signal()
        }
    }

    /// The exit status, or nil when the process is still running after `timeout` (nil: forever).
    package func wait(timeout: Duration?) -> Int32? {
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
    package func kill(_ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if exitStatus == nil { _ = Glibc.kill(-pid, signal) }
    }
}
