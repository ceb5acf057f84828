/// What a daemon executable is, for `--print-capabilities` and its logs.
public struct DaemonIdentity: Sendable {
    /// The executable's name, e.g. `vhost-user-rng`.
    public let name: String
    /// The backend type in QEMU's vhost-user.json (`rng`, `block`, `input`, ...).
    public let type: String
    /// The optional capabilities the daemon supports, in QEMU's vhost-user.json names.
    public let features: [String]
    /// The adaptive polling window when `--poll-us` is not given: worth it for latency-bound devices.
    public let defaultPollMicroseconds: UInt64
    /// The system calls the device needs beyond the daemon runtime's (`SandboxPolicy.daemonRuntime`).
    public let sandbox: SandboxPolicy

    public init(name: String, type: String, features: [String] = [], defaultPollMicroseconds: UInt64 = 0,
                sandbox: SandboxPolicy = []) {
        self.name = name
        self.type = type
        self.features = features
        self.defaultPollMicroseconds = defaultPollMicroseconds
        self.sandbox = sandbox
    }

    /// `{"type": ..., "features": [...]}`, as QEMU's backend program conventions define it.
    public var capabilitiesJSON: String {
        let list = features.map { "    \(jsonString($0))" }.joined(separator: ",\n")
        return "{\n  \"type\": \(jsonString(type)),\n  \"features\": [\(list.isEmpty ? "" : "\n\(list)\n  ")]\n}"
    }
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
