import Foundation
import GuestBed
import SystemdBed
import Testing

extension UnitProfile {
    /// The guest CID from the options file, read by the custom kernel's built-in vsock driver through
    /// QEMU's vhost-user-vsock-pci, and a connect to a host port nobody listens on, refused by the
    /// daemon inside the unit's sandbox (REQUEST, then RST).
    static let vsock = UnitProfile(
        daemon: "vsock",
        options: "VHOST_USER_VSOCK_CID=7\nVHOST_USER_VSOCK_OPTIONS=\"--max-connections 8\"\n",
        qemuDevice: "vhost-user-vsock-pci",
        machine: .customKernel, tools: ["vsock-tool"],
        // QEMU's vhost-user-vsock-pci does not survive its back-end leaving while attached.
        stopsWhileAttached: false,
        guestScript: { _ in "vsock-tool probe 2 9" },
        checkGuest: { run, values, _, _ in
            #expect(values["cid"] == "7", "run \(run): the guest's CID is \(values["cid"] ?? "unknown")")
            #expect(values["connect"] == "refused", "run \(run): a connect to host port 9 ended \(values["connect"] ?? "?")")
        },
        checkOptions: { _, first in
            // VHOST_USER_VSOCK_CID: the CID the guest's driver read from the config space.
            #expect(first["cid"] == "7")
        })
}
