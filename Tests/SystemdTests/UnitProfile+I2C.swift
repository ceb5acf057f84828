import Foundation
import SystemdBed
import Testing

extension UnitProfile {
    /// A sensor and an EEPROM whose file the options put in the service's state directory. The
    /// systemd tests' guest (Debian's kernel) has no i2c_virtio driver: QEMU attaches the device and
    /// the guest sees it, no driver starts it (GuestTests drive the bus under the custom kernel).
    static let i2c = generic(
        "i2c", arguments: "--sensor addr=0x48 --eeprom addr=0x50,size=2048,file=/var/lib/vhost-user-i2c/vm1/eeprom.bin",
        checkFiles: { container in
            // The dynamic user made the EEPROM's file, blank, in its state directory.
            let file = try container.shell("stat -L -c %s /var/lib/vhost-user-i2c/vm1/eeprom.bin; od -An -tx1 -N4 /var/lib/vhost-user-i2c/vm1/eeprom.bin")
            let lines = file.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(lines.first == "2048", "the EEPROM file: \(file)")
            #expect(lines.dropFirst().first == "ff ff ff ff", "the EEPROM file: \(file)")
        })
}
