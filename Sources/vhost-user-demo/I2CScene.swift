// The demo's vhost-user-i2c: a simulated AT24 EEPROM and LM75 sensor on the guest's I2C bus, driven
// with busybox's i2c-tools in a guest on the custom kernel (Debian's has no i2c_virtio), and the
// EEPROM's data checked in its file on the host.

import Foundation
import GuestBed

extension DemoScene {
    static let i2c = DemoScene(name: "i2c", summary: "vhost-user-i2c: a simulated EEPROM and sensor on the guest's I2C bus (i2c_virtio)") { arguments in
        let eeprom = FileManager.default.temporaryDirectory.appendingPathComponent("demo-eeprom-\(getpid()).bin").path
        defer { try? FileManager.default.removeItem(atPath: eeprom) }
        let daemon = GuestDaemon(
            executable: "vhost-user-i2c",
            arguments: ["--eeprom", "addr=0x50,size=4096,page=32,file=\(eeprom)", "--sensor", "addr=0x48,temp=23.5"] + arguments,
            qemuDevice: "vhost-user-i2c-pci")
        // QEMU's vhost-user-i2c-pci gives the guest a 4-entry queue: single-message transfers only.
        let result = try runGuest(
            "\(daemon.commandLine): booting the custom kernel with vhost-user-i2c-pci and i2c_virtio",
            daemons: [daemon], modules: [],
            script: """
                set -e
                for d in /sys/bus/i2c/devices/i2c-*; do
                    case "$(cat $d/name)" in *virtio*) bus=${d##*/i2c-} ;; esac
                done
                echo "adapter: i2c-$bus, $(cat /sys/bus/i2c/devices/i2c-$bus/name)"
                i2cdetect -y $bus
                i2ctransfer -y $bus w4@0x50 0x00 0x1e 0x68 0x65
                i2ctransfer -y $bus w6@0x50 0x00 0x20 0x6c 0x6c 0x6f 0x21
                i2ctransfer -y $bus w2@0x50 0x00 0x1e
                echo "eeprom 0x1e-0x23, across the page boundary at 0x20: $(i2ctransfer -y $bus r6@0x50)"
                i2ctransfer -y $bus w1@0x48 0x00
                echo "sensor temperature register: $(i2ctransfer -y $bus r2@0x48)"
                """,
            machine: .customKernel)
        guard result.labelled["sensor temperature register"] == "0x17 0x80" else { throw DemoFailure("the sensor did not read 23.5 °C") }
        let file = (try? Data(contentsOf: URL(fileURLWithPath: eeprom))) ?? Data()
        let text = file.count >= 0x24 ? String(decoding: file[0x1e..<0x24], as: UTF8.self) : ""
        guard text == "hello!" else { throw DemoFailure("the EEPROM file holds \"\(text)\" at 0x1e, not the guest's \"hello!\"") }
        print("demo: the host reads from \(eeprom) at 0x1e: \"\(text)\"")
        return "the guest found the EEPROM and sensor, wrote the EEPROM across a page boundary (in the host's file) and read 23.5 °C"
    }
}
