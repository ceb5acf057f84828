/// The system calls a sandboxed daemon may make: everything else kills it with SIGSYS.
///
/// A daemon's policy is the daemon runtime's (`SandboxPolicy.daemonRuntime`) plus the device's own,
/// which its executable declares in its `DaemonIdentity`:
///
/// ```swift
/// DaemonIdentity(name: "vhost-user-rng", type: "rng", sandbox: ["read", "getrandom"])
/// ```
public struct SandboxPolicy: Sendable, Equatable, ExpressibleByArrayLiteral {
    /// The rules, each once, in the order they were first given.
    public private(set) var rules: [SystemCallRule] = []

    public init(_ rules: [SystemCallRule]) {
        for rule in rules where !self.rules.contains(rule) { self.rules.append(rule) }
    }

    public init(arrayLiteral rules: SystemCallRule...) { self.init(rules) }

    /// The rules of both policies; a call one of them allows with any arguments is not refused by
    /// the other (libseccomp keeps the first of two unconditional actions for one call, so the
    /// runtime's `openat` refusal would otherwise hide a device's `openat`).
    public func union(_ other: SandboxPolicy) -> SandboxPolicy {
        let all = rules + other.rules
        let allowed = Set(all.filter { $0.verdict == .allow && $0.conditions.isEmpty }.map(\.name))
        return SandboxPolicy(all.filter { $0.verdict == .allow || !allowed.contains($0.name) })
    }

    /// The distinct system calls the policy lets run (with some arguments at least).
    public var allowedCalls: Set<String> { Set(rules.filter { $0.verdict == .allow }.map(\.name)) }
}

/// One system call the filter lets through, optionally only when its arguments match. Several rules
/// for one call allow it when any of them matches.
public struct SystemCallRule: Sendable, Hashable, ExpressibleByStringLiteral {
    /// What the filter does with a matching call.
    public enum Verdict: Sendable, Hashable {
        /// The call runs.
        case allow
        /// The call does not run and returns -1 with this errno (e.g. ENOSYS so that the C library
        /// falls back to a call the filter can inspect).
        case fail(errno: Int32)
    }

    /// The call's name as the kernel spells it (`read`, `io_uring_enter`).
    public let name: String
    /// All must hold; none means any arguments.
    public let conditions: [ArgumentCondition]
    public let verdict: Verdict

    public init(_ name: String, where conditions: ArgumentCondition..., verdict: Verdict = .allow) {
        self.name = name
        self.conditions = conditions
        self.verdict = verdict
    }

    /// The call, with any arguments.
    public init(stringLiteral name: String) { self.init(name) }
}

/// A test of one system-call argument: `(argument & mask) == value`.
public struct ArgumentCondition: Sendable, Hashable {
    /// 0 for the first argument, up to 5.
    public let index: UInt32
    public let mask: UInt64
    public let value: UInt64

    /// The bits `mask` of argument `index` equal `value`: e.g. a flag is set (`value == mask`) or clear (`value == 0`).
    public static func argument(_ index: UInt32, masked mask: UInt64, equals value: UInt64) -> ArgumentCondition {
        precondition(index < 6 && value & ~mask == 0, "argument \(index): value \(value) has bits outside mask \(mask)")
        return ArgumentCondition(index: index, mask: mask, value: value)
    }

    /// Argument `index`, an `int` or `unsigned int` in C (a file descriptor, an address family, an
    /// ioctl request), equals `value`. Only the low 32 bits are compared: the kernel ignores the
    /// upper half of such an argument, so callers may leave anything there.
    public static func argument(_ index: UInt32, equals value: UInt32) -> ArgumentCondition {
        argument(index, masked: 0xffff_ffff, equals: UInt64(value))
    }
}
