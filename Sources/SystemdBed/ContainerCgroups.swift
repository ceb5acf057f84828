// The cgroups a container's systemd-nspawn runs in.

import Foundation
import Glibc

/// A cgroup of the container's own in each hierarchy systemd uses: the unified (cgroup2) one and,
/// on a hybrid host like this one, the `name=systemd` one. With `--keep-unit` and no host systemd,
/// nspawn creates its `payload` and `supervisor` cgroups inside the cgroup it was started in, so it
/// must be started in these (`joinCommand`) to keep the host's own cgroups clean; `remove` takes
/// them away after the container has stopped.
struct ContainerCgroups {
    /// The container's cgroup directory in each hierarchy.
    let directories: [String]

    /// Creates `name` in each hierarchy, under this process's own cgroup there.
    init(name: String) throws {
        var hierarchies: [(mount: String, key: String)] = []
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
            hierarchies = [("/sys/fs/cgroup", "")]  // unified only
        } else {
            if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.controllers") {
                hierarchies.append(("/sys/fs/cgroup/unified", ""))
            }
            if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/systemd/cgroup.procs") {
                hierarchies.append(("/sys/fs/cgroup/systemd", "name=systemd"))
            }
        }
        guard !hierarchies.isEmpty else { throw SystemdBedError("found no cgroup hierarchy for systemd under /sys/fs/cgroup") }
        var directories: [String] = []
        for hierarchy in hierarchies {
            let base = Self.ownCgroup(key: hierarchy.key)
            let directory = "\(hierarchy.mount)\(base == "/" ? "" : base)/\(name)"
            guard mkdir(directory, 0o755) == 0 else {
                let error = errno
                directories.reversed().forEach { rmdir($0) }
                throw SystemdBedError("cannot create the cgroup \(directory): \(String(cString: strerror(error)))")
            }
            directories.append(directory)
        }
        self.directories = directories
    }

    /// This process's cgroup in the hierarchy whose /proc/self/cgroup line (ID:CONTROLLERS:PATH)
    /// names `key` as its controllers: `name=systemd`, or "" for the unified one (ID 0).
    private static func ownCgroup(key: String) -> String {
        let own = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        for line in own.split(separator: "\n") {
            let fields: [Substring] = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[1] == key else { continue }
            if key.isEmpty && fields[0] != "0" { continue }
            return String(fields[2])
        }
        return "/"
    }

    /// Shell words that move the shell running them into the container's cgroups.
    var joinCommand: String {
        directories.map { "echo $$ > '\($0)/cgroup.procs'" }.joined(separator: " && ")
    }

    /// Kills every process left in the cgroups (cgroup2's cgroup.kill).
    func killAll() {
        for directory in directories where FileManager.default.fileExists(atPath: "\(directory)/cgroup.kill") {
            try? "1".write(toFile: "\(directory)/cgroup.kill", atomically: false, encoding: .utf8)
        }
    }

    /// Removes the cgroups, the ones nspawn and the container's systemd left inside first. Returns
    /// what could not be removed (a cgroup that still has processes), or nil.
    func remove() -> String? {
        var left: [String] = []
        for directory in directories {
            var inner: [String] = []
            if let walker = FileManager.default.enumerator(atPath: directory) {
                while let entry = walker.nextObject() as? String {
                    var isDirectory: ObjCBool = false
                    if FileManager.default.fileExists(atPath: "\(directory)/\(entry)", isDirectory: &isDirectory), isDirectory.boolValue {
                        inner.append("\(directory)/\(entry)")
                    }
                }
            }
            // Deepest first.
            for path in inner.sorted(by: { $0.count > $1.count }) + [directory] where rmdir(path) != 0 {
                let error = errno
                if error != ENOENT { left.append("\(path): \(String(cString: strerror(error)))") }
            }
        }
        return left.isEmpty ? nil : "cgroups left behind: \(left.joined(separator: ", "))"
    }
}
