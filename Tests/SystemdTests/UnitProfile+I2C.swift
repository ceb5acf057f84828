import Foundation
import GuestBed
import SystemdBed
import Testing

extension UnitProfile {
    /// A sensor and an EEPROM whose file the options put in the service's state directory, driven by
    /// the custom kernel's i2c_virtio (Debian's kernel has no I2C_VIRTIO) with busybox's i2c tools:
    /// run 1 writes the EEPROM, run 2 (the service serving QEMU again) reads it back.
    static let i2c = UnitProfile(
        daemon: "i2c",
        options: "VHOST_USER_I2C_OPTIONS=\"--sensor addr=0x48,temp=19.5 --eeprom addr=0x50,size=2048,file=/var/lib/vhost-user-i2c/vm1/eeprom.bin --log-level debug\"\n",
        qemuDevice: "vhost-user-i2c-pci",
        machine: .customKernel,
        guestScript: { run in
            """
            set -e
            for d in /sys/bus/i2c/devices/i2c-*; do
                case "$(cat $d/name)" in *virtio*) bus=${d##*/i2c-} ;; esac
            done
            echo "found=$(i2cdetect -y $bus | tail -n +2 | cut -c5- | tr ' ' '\\n' | grep -E '^[0-9a-f]{2}$' | tr '\\n' ' ')"
            \(run == 1 ? "i2ctransfer -y $bus w3@0x50 0x10 0x5a 0xa5" : "")
            i2ctransfer -y $bus w1@0x50 0x10
            echo "eeprom=$(i2ctransfer -y $bus r2@0x50)"
            i2ctransfer -y $bus w1@0x48 0x00
            echo "temperature=$(i2ctransfer -y $bus r2@0x48)"
            """
        },
        checkGuest: { run, values, _, _ in
            // The sensor, and the 2 KiB EEPROM's eight client addresses (one per 256 bytes).
            #expect(values["found"]?.split(separator: " ") == ["48", "50", "51", "52", "53", "54", "55", "56", "57"],
                    "run \(run): i2cdetect found \(values["found"] ?? "nothing")")
            // Run 2 reads what run 1 wrote: the file in the state directory kept it across connections.
            #expect(values["eeprom"] == "0x5a 0xa5", "run \(run): the EEPROM holds \(values["eeprom"] ?? "nothing")")
        },
        checkOptions: { container, first in
            // temp=19.5: 0x13 0x80 in the LM75's temperature register.
            #expect(first["temperature"] == "0x13 0x80", "the sensor reads \(first["temperature"] ?? "nothing")")
            // The dynamic user made the EEPROM's file in its state directory; the guest's bytes are in it.
            let bytes = try container.shell("od -An -tx1 -j16 -N2 /var/lib/vhost-user-i2c/vm1/eeprom.bin")
            #expect(bytes.trimmingCharacters(in: .whitespacesAndNewlines) == "5a a5", "the EEPROM file at 0x10: \(bytes)")
            try container.waitForJournal(of: "vhost-user-i2c@vm1.service", containing: "queue 0 started",
                                         priority: "debug", timeout: .seconds(10))
        })
}
