#if canImport(Glibc)
import Glibc
#endif

extension SandboxPolicy {
    /// What every daemon makes once it serves: the kit (sessions, queue workers, guest memory, the
    /// inflight region), the Swift runtime, glibc, logging to stderr, libsystemd's sd_notify and the
    /// signal and watchdog threads. A device adds its own in its `DaemonIdentity`.
    public static let daemonRuntime: SandboxPolicy = [
        // Descriptors: eventfds, log lines, the inherited descriptors' flags (O_NONBLOCK), memory
        // region sizes (fstat is newfstatat in glibc).
        "read", "write", "close", "fcntl", "newfstatat",
        // Memory: the allocator, guest memory regions, the inflight region; never executable.
        SystemCallRule("mmap", where: .argument(2, masked: UInt64(PROT_EXEC), equals: 0)),
        SystemCallRule("mprotect", where: .argument(2, masked: UInt64(PROT_EXEC), equals: 0)),
        "munmap", "madvise", "mremap", "brk",
        // The inflight region (VHOST_USER_GET_INFLIGHT_FD): a memfd sized with ftruncate.
        "memfd_create", "ftruncate",
        // Threads. glibc tries clone3 first, whose flags live in memory the filter cannot read: it
        // gets ENOSYS, and glibc falls back to clone, allowed for threads (CLONE_THREAD) only, not
        // for new processes.
        SystemCallRule("clone", where: .argument(0, masked: cloneThread, equals: cloneThread)),
        SystemCallRule("clone3", verdict: .fail(errno: ENOSYS)),
        "futex", "set_robust_list", "rseq", "sched_yield", "exit", "exit_group",
        // A new thread names itself (vhu-queue-N, vhu-blk-io): prctl(PR_SET_NAME) and nothing else.
        SystemCallRule("prctl", where: .argument(0, equals: prSetName)),
        // Signals: SIGTERM/SIGINT (and blk's SIGHUP) through sigwait, the kit's SIGBUS guard, and
        // abort() or raise(), which signal the process itself only (its pid when the policy is first used).
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack", "restart_syscall",
        "getpid", "gettid", SystemCallRule("tgkill", where: .argument(0, equals: UInt32(bitPattern: getpid()))),
        // Time and waiting: queue workers, the watchdog, the rate limiter (all with timeouts, none
        // sleeps; clock_gettime is a system call where the clock source has no vDSO).
        "clock_gettime",
        // ThreadSanitizer's runtime (scripts/test-sanitizers runs the daemons under it) reads the time
        // and sleeps in its background thread: harmless, and the same calls in every build.
        "gettimeofday", "nanosleep", "clock_nanosleep",
        "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd2", "poll",
        // The front-end's socket: messages with descriptors (SCM_RIGHTS), the next connection.
        "accept4", "recvmsg", "sendmsg", "shutdown",
        // sd_notify: a unix datagram socket per message (no other address family), its send buffer
        // size, and the ids it compares to decide whether to send credentials.
        SystemCallRule("socket", where: .argument(0, equals: UInt32(AF_UNIX))),
        "getsockopt",
        SystemCallRule("setsockopt", where: .argument(1, equals: UInt32(SOL_SOCKET)), .argument(2, equals: UInt32(SO_SNDBUF))),
        SystemCallRule("setsockopt", where: .argument(1, equals: UInt32(SOL_SOCKET)), .argument(2, equals: UInt32(SO_SNDBUFFORCE))),
        "getuid", "geteuid", "getgid", "getegid",
        // Hashing seeds, SystemRandomNumberGenerator.
        "getrandom",
        // Files: everything is opened at start-up. glibc's allocator opens files the first time it
        // needs them, at any time (/sys/devices/system/cpu/online then /proc/stat to count CPUs
        // for a new arena, /proc/sys/vm/overcommit_memory to shrink one), and copes with a
        // refusal: openat fails with EACCES, and the CPU count comes from sched_getaffinity.
        SystemCallRule("openat", verdict: .fail(errno: EACCES)), "sched_getaffinity",
    ]

    /// PR_SET_NAME from <linux/prctl.h>.
    private static let prSetName: UInt32 = 15

    /// CLONE_THREAD from <linux/sched.h> (not visible from Swift's Glibc module).
    private static let cloneThread: UInt64 = 0x0001_0000
}
