// Whether the systemd tests run, and why not: they boot containers (root, systemd-nspawn) and real
// guests (QEMU, a prepared kernel). scripts/test installs and prepares everything.

import Foundation
import SystemdBed
import Testing

enum SystemdTestsAvailability {
    /// Why the systemd tests are skipped here, or nil when they run.
    static let skipReason: String? = {
        let environment = ProcessInfo.processInfo.environment
        if environment["VHOST_USER_SKIP_SYSTEMD_TESTS"] == "1" { return "VHOST_USER_SKIP_SYSTEMD_TESTS=1" }
        if environment["VHOST_USER_SKIP_GUEST_TESTS"] == "1" { return "VHOST_USER_SKIP_GUEST_TESTS=1 (they boot real guests)" }
        return SystemdContainer.unavailableReason
    }()

    static let trait = ConditionTrait.enabled(if: skipReason == nil, Comment(rawValue: skipReason ?? ""))
}
