// The root filesystem that scripts/prepare-systemd-root builds once per machine.

import Foundation
import GuestBed

/// The minimal Debian root (systemd as PID 1, no Swift toolchain) that scripts/prepare-systemd-root
/// leaves in `${VHOST_USER_SYSTEMD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-user-devices/systemd-root}/root`.
/// Containers never change it: each boots an overlay of it.
public struct SystemdRoot: Sendable {
    /// The root filesystem's directory.
    public var path: String

    static var cache: String { cacheDirectory("systemd-root", override: "VHOST_USER_SYSTEMD_CACHE") }

    /// The prepared root; throws, saying how to make it, when there is none.
    public static func locate() throws -> SystemdRoot {
        let cache = cache
        guard FileManager.default.fileExists(atPath: "\(cache)/ready"),
            FileManager.default.isExecutableFile(atPath: "\(cache)/root/lib/systemd/systemd")
        else {
            throw SystemdBedError(
                "no systemd root in \(cache): run scripts/install-deps && scripts/prepare-systemd-root "
                    + "(or set VHOST_USER_SKIP_SYSTEMD_TESTS=1 to skip the systemd tests)")
        }
        return SystemdRoot(path: "\(cache)/root")
    }
}
