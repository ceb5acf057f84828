#if canImport(Glibc)
import Glibc
#endif

/// The descriptors a daemon inherited at exec, beyond stdin, stdout and stderr: whatever its parent
/// left open (a shell's, a test runner's, a VMM's). The daemon needs none of them except the socket
/// it serves, and they must not stay reachable from a compromised daemon.
///
/// The rule that tells what to keep: every descriptor the daemon opens itself is close-on-exec (the
/// kit, libseccomp, the C library all open that way), and a daemon that adopts an inherited one
/// marks it close-on-exec too (`ListenEndpoint` does so for `--fd N` and socket activation). A
/// descriptor that was open at `snapshot()` and is still not close-on-exec at `closeUnadopted()` is
/// inherited and unused: it is closed. A number that was closed and then reused by one of the
/// daemon's own descriptors in between is close-on-exec, so it stays.
struct InheritedDescriptors: Sendable {
    /// Open at the snapshot, not close-on-exec, above 2.
    let numbers: [Int32]

    /// Takes the list; call it first thing at start-up, before anything opens a descriptor.
    static func snapshot() -> InheritedDescriptors {
        InheritedDescriptors(numbers: openDescriptors().filter { $0 > 2 && !isCloseOnExec($0) })
    }

    /// Closes the listed descriptors that were not adopted since; returns how many.
    func closeUnadopted() -> Int {
        var closed = 0
        for fd in numbers where fcntl(fd, F_GETFD) >= 0 && !Self.isCloseOnExec(fd) {
            close(fd)
            closed += 1
        }
        return closed
    }

    private static func isCloseOnExec(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) & FD_CLOEXEC != 0 }

    /// The open descriptors, from /proc/self/fd, or by probing every number below the descriptor
    /// limit when /proc is not mounted.
    private static func openDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else {
            var limit = rlimit()
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            return (0..<Int32(clamping: min(limit.rlim_cur, 1 << 20))).filter { fcntl($0, F_GETFD) >= 0 }
        }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var found: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let fd = Int32(name), fd != own { found.append(fd) }
        }
        return found
    }
}
