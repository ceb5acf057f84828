import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A deliberate forbidden system call, so that tests can see the filter at work: with
/// `VHOST_USER_SANDBOX_PROBE=execve` (or `inet-socket`) in its environment, the daemon makes that
/// call once, right after entering the sandbox. Under the filter the kernel kills it with SIGSYS;
/// without (`--sandbox none`) the call is harmless (an execve of a path that does not exist; an
/// internet socket closed at once), the daemon logs its result and carries on. With a probe, the
/// daemon dumps no core.
///
/// Only the daemon's own environment at start-up selects it: nothing a front-end or a guest sends
/// can reach it.
enum SandboxProbe: String, CaseIterable {
    case execve
    case inetSocket = "inet-socket"

    static let variable = "VHOST_USER_SANDBOX_PROBE"

    /// The probe the environment asks for; throws for an unknown one.
    static func fromEnvironment() throws(StartupError) -> SandboxProbe? {
        guard let value = getenv(variable).map({ String(cString: $0) }), !value.isEmpty else { return nil }
        guard let probe = SandboxProbe(rawValue: value) else {
            throw StartupError("\(variable)=\(value): not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        // The deliberate death leaves no core file behind.
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        return probe
    }

    /// Makes the call; returns only when the sandbox let it through.
    func run(logger: Logger) {
        switch self {
        case .execve:
            let path = "/nonexistent/vhost-user-sandbox-probe"
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
            _ = Glibc.execve(path, argv, [nil])
            logger.warning("sandbox probe: execve was not filtered (\(SystemError.describe(errno)))")
        case .inetSocket:
            let datagram: Int32 = 2  // SOCK_DGRAM (not visible from this file's modules in release builds)
            let fd = socket(AF_INET, datagram, 0)
            if fd >= 0 { close(fd) }
            logger.warning("sandbox probe: socket(AF_INET) was not filtered")
        }
    }
}
