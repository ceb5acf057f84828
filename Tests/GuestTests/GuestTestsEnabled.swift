// Whether the guest tests run: they need QEMU, busybox and a prepared kernel (scripts/test installs them).

import Foundation
import GuestBed

extension GuestTestBed {
    /// False when `VHOST_USER_SKIP_GUEST_TESTS=1`: the guest suites are then disabled.
    static let enabled = ProcessInfo.processInfo.environment["VHOST_USER_SKIP_GUEST_TESTS"] != "1"
}
