// The guest kernel and modules prepared by scripts/prepare-guest, and module dependency order.

import Foundation

/// The kernel and modules that scripts/prepare-guest leaves in
/// `${VHOST_USER_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-user-devices/guest}`.
struct GuestCache {
    var directory: String
    var version: String
    var kernel: String { "\(directory)/kernel" }
    var modulesDirectory: String { "\(directory)/modules/\(version)" }

    static var directory: String { cacheDirectory("guest", override: "VHOST_USER_GUEST_CACHE") }

    static func locate() throws -> GuestCache {
        let dir = directory
        guard let stamp = try? String(contentsOfFile: "\(dir)/ready", encoding: .utf8),
            let version = stamp.split(separator: "\n").first.map(String.init), !version.isEmpty,
            FileManager.default.fileExists(atPath: "\(dir)/kernel")
        else {
            throw GuestTestBedError(
                "no guest kernel in \(dir): run scripts/install-deps && scripts/prepare-guest "
                    + "(or set VHOST_USER_SKIP_GUEST_TESTS=1 to skip the guest tests)")
        }
        return GuestCache(directory: dir, version: version)
    }

    /// The modules' files with their dependencies, in load order (dependencies first), from
    /// modules.dep. Names may use `-` or `_`; built-in modules are left out.
    func resolve(_ names: [String]) throws -> [String] {
        func key(_ name: String) -> String {
            var base = (name as NSString).lastPathComponent
            for suffix in [".xz", ".zst", ".gz", ".ko"] where base.hasSuffix(suffix) {
                base.removeLast(suffix.count)
            }
            return base.replacingOccurrences(of: "-", with: "_")
        }
        let depText = readText("\(modulesDirectory)/modules.dep")
        var paths: [String: String] = [:]
        var dependencies: [String: [String]] = [:]
        for line in depText.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let path = parts.first.map(String.init) else { continue }
            let deps = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
            paths[key(path)] = path
            dependencies[key(path)] = deps.map(key)
        }
        let builtin = Set(readText("\(modulesDirectory)/modules.builtin").split(separator: "\n").map { key(String($0)) })

        var ordered: [String] = []
        var visited: Set<String> = []
        func visit(_ name: String) throws {
            guard !visited.contains(name) else { return }
            visited.insert(name)
            guard let path = paths[name] else {
                if builtin.contains(name) { return }
                throw GuestTestBedError(
                    "module \(name) is not in \(modulesDirectory)/modules.dep: add it to MODULES in "
                        + "scripts/prepare-guest and run it again")
            }
            for dep in dependencies[name] ?? [] { try visit(dep) }
            ordered.append("\(modulesDirectory)/\(path)")
        }
        for name in names { try visit(key(name)) }
        return ordered
    }
}
