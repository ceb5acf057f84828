import CSeccomp
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Installs a seccomp allow-list on every thread of the process through libseccomp: a call the
/// policy does not name kills the whole process with SIGSYS (SCMP_ACT_KILL_PROCESS); calls of another
/// architecture (x32, i386 on x86_64) are killed too. Irrevocable, and inherited by later threads.
/// Loading it sets PR_SET_NO_NEW_PRIVS first: nothing the process executes can gain privileges.
enum SystemCallFilter {
    /// Installs `policy`. Throws when a call name is unknown or the kernel refuses the filter.
    static func install(_ policy: SandboxPolicy) throws(StartupError) {
        guard let filter = seccomp_init(SCMP_ACT_KILL_PROCESS) else {
            throw StartupError("sandbox: libseccomp cannot make a filter: seccomp(2) is refused here (under systemd, SystemCallFilter= must allow seccomp); or use --sandbox none")
        }
        defer { seccomp_release(filter) }
        // prctl(PR_SET_NO_NEW_PRIVS) on load (libseccomp's default, made explicit; prctl is variadic
        // and cannot be called from Swift).
        try check(seccomp_attr_set(filter, SCMP_FLTATR_CTL_NNP, 1), "cannot ask for no_new_privs")
        // Threads started before the filter (signal waiter, watchdog, vhost-user-blk's resize watch)
        // get it too.
        try check(seccomp_attr_set(filter, SCMP_FLTATR_CTL_TSYNC, 1), "cannot ask for the filter on every thread")
        for rule in policy.rules {
            let number = seccomp_syscall_resolve_name(rule.name)
            guard number != __NR_SCMP_ERROR else { throw StartupError("sandbox: unknown system call \(rule.name)") }
            var comparisons = rule.conditions.map {
                scmp_arg_cmp(arg: $0.index, op: SCMP_CMP_MASKED_EQ, datum_a: $0.mask, datum_b: $0.value)
            }
            try check(seccomp_rule_add_array(filter, action(rule.verdict), number, UInt32(comparisons.count), &comparisons),
                      "cannot add \(rule.name)")
        }
        try check(seccomp_load(filter), "the kernel refused the system-call filter")
    }

    private static func action(_ verdict: SystemCallRule.Verdict) -> UInt32 {
        switch verdict {
        case .allow: SCMP_ACT_ALLOW
        case let .fail(errno): 0x0005_0000 | (UInt32(errno) & 0xffff)  // SCMP_ACT_ERRNO(errno)
        }
    }

    /// libseccomp returns 0 or a negative errno.
    private static func check(_ result: Int32, _ what: String) throws(StartupError) {
        guard result == 0 else { throw StartupError("sandbox: \(SystemError(what, errno: -result))") }
    }
}
