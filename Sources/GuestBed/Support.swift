// Small helpers shared by the bed's files (and, package-wide, by the systemd bed).

import Foundation

/// The project's cache directory `name`, outside the repository and kept across runs:
/// `$override` when set, else `${XDG_CACHE_HOME:-$HOME/.cache}/vhost-user-devices/NAME` (the scripts
/// that fill it use the same rule).
package func cacheDirectory(_ name: String, override variable: String) -> String {
    let env = ProcessInfo.processInfo.environment
    if let dir = env[variable], !dir.isEmpty { return dir }
    let cacheHome = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
        ?? "\(env["HOME"] ?? NSHomeDirectory())/.cache"
    return "\(cacheHome)/vhost-user-devices/\(name)"
}

/// The full path of `name` in `PATH`.
package func findInPath(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw GuestTestBedError("\(name) is not installed: run scripts/install-deps && scripts/prepare-guest")
}

package func readText(_ path: String) -> String {
    guard let data = FileManager.default.contents(atPath: path) else { return "" }
    return String(decoding: data, as: UTF8.self)
}

/// The last `lines` lines of `text`.
package func tail(_ text: String, lines: Int = 40) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
}

extension Duration {
    package var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
