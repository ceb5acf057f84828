// The project as a user installs it: `make install` into a container's root.

import Foundation

/// What `make install` put into a root, and how to run it.
public enum ProjectInstallation {
    /// Runs `make install DESTDIR=root PREFIX=/usr` in `repository` (which builds the daemons first
    /// when they are not up to date: allow minutes then). Throws with make's output when it fails.
    public static func makeInstall(repository: String, into root: String, timeout: Duration = .seconds(1800)) throws {
        let result = try HostCommand.run(
            ["make", "--no-print-directory", "-C", repository, "install", "DESTDIR=\(root)", "PREFIX=/usr"], timeout: timeout)
        guard result.status == 0 else {
            throw SystemdBedError("make install failed:\n\(result.output.suffix(3000))\n\(result.errorOutput.suffix(3000))")
        }
    }

    /// The daemons whose systemd units `repository` ships (`systemd/vhost-user-NAME@.service`): the
    /// names (`rng`, `blk`, ...), sorted. The Makefile installs the same list.
    public static func daemons(in repository: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: "\(repository)/systemd")
            .filter { $0.hasPrefix("vhost-user-") && $0.hasSuffix("@.service") }
            .map { String($0.dropFirst("vhost-user-".count).dropLast("@.service".count)) }
            .sorted()
    }
}
