import ArgumentParser
import Logging

/// `--sandbox`: how a daemon confines itself once it is set up.
public enum SandboxMode: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// Close inherited descriptors and install the system-call allow-list.
    case seccomp
    /// Neither, for debugging (`--user` still applies).
    case none

    /// What each mode does, for --help and the man pages.
    public static var allValueDescriptions: [String: String] {
        [seccomp.rawValue: "the default: close inherited descriptors and allow only the system calls the daemon needs (any other kills it with SIGSYS)",
         none.rawValue: "neither, for debugging (--user still applies)"]
    }
}

/// What a daemon does to itself between start-up (device made, files opened, socket bound) and the
/// first front-end, in this order: close the descriptors it inherited and did not adopt, become
/// `--user`, then forbid gaining privileges (no_new_privs) and install the seccomp filter.
struct Sandbox {
    let mode: SandboxMode
    let credentials: UserCredentials?
    let policy: SandboxPolicy
    let inherited: InheritedDescriptors

    /// Enters the sandbox and logs one line saying what it is.
    func enter(logger: Logger) throws(StartupError) {
        var done: [String] = []
        if mode == .seccomp {
            let closed = inherited.closeUnadopted()
            if closed > 0 { done.append("closed \(closed) inherited descriptor\(closed == 1 ? "" : "s")") }
        }
        if let credentials {
            try credentials.assume()
            done.append("running as uid \(credentials.uid) gid \(credentials.gid)")
        }
        if mode == .seccomp {
            try SystemCallFilter.install(policy)
            done.append("system calls limited to \(policy.allowedCalls.count)")
        } else {
            done.append("no system-call filter (--sandbox none)")
        }
        logger.info("sandbox: \(done.joined(separator: ", "))")
    }
}
