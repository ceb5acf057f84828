import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Starts `argv` (argv[0] a full path) with posix_spawn in a process group of its own, stdin from
/// /dev/null, no signals blocked and the default action for the ones tests send, so the whole group
/// can be signalled at once. `configure` adds file actions (stdout, stderr, inherited descriptors).
/// `environment` nil keeps this process's environment (less LeakSanitizer's exit check, see
/// `withoutExitLeakCheck`). Returns the pid; throws `SpawnError`.
public func spawnInOwnGroup(_ argv: [String], environment: [String]? = nil,
                            configure: (inout posix_spawn_file_actions_t) throws -> Void) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    try configure(&actions)
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
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    let cEnv = withoutExitLeakCheck(environment ?? currentEnvironment()).map { strdup($0) } + [nil]
    defer { cEnv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
    guard rc == 0 else { throw SpawnError(path: argv[0], errno: rc) }
    return pid
}

/// This process's environment as `NAME=value` strings.
private func currentEnvironment() -> [String] {
    var result: [String] = []
    var entry = environ
    while let variable = entry.pointee {
        result.append(String(cString: variable))
        entry += 1
    }
    return result
}

/// Under AddressSanitizer (scripts/test-sanitizers), children here are daemons that sandbox themselves:
/// LeakSanitizer's exit-time check stops the process's threads with ptrace, which their seccomp filter
/// forbids (the daemon would die with SIGSYS at exit). Their leaks are the soak's and the in-process
/// tests' to find; every other ASan check stays on in them.
private func withoutExitLeakCheck(_ environment: [String]) -> [String] {
    environment.map { $0.hasPrefix("ASAN_OPTIONS=") ? $0 + ":detect_leaks=0" : $0 }
}

/// A process that could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    public let path: String
    public let errno: Int32
    public var description: String { "cannot start \(path): \(SystemError.describe(errno))" }
}

/// The exit code from a waitpid status, or 128 + the signal that ended the process.
public func exitCode(fromWaitStatus status: Int32) -> Int32 {
    status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}
