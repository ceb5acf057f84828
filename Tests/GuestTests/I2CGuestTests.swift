// vhost-user-i2c in a real guest: QEMU's vhost-user-i2c-pci, Linux's i2c_virtio driver (built into the
// custom guest kernel with i2c-dev), busybox's i2c-tools applets.

import Foundation
import GuestBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct I2CGuestTests {
    /// Finds the virtio adapter, scans it, writes the EEPROM across a page boundary (two page writes) and
    /// with a page write that wraps, reads both back, reads the sensor. QEMU's vhost-user-i2c-pci gives
    /// the guest a 4-entry queue; the device offers indirect descriptors, so each request takes one
    /// entry and a write+read transaction (FAIL_NEXT) fits: both single-message transfers (the
    /// EEPROM's pointer set by one, read by the next) and combined ones run. Prints `key=value` lines.
    static let script = """
        set -e
        for d in /sys/bus/i2c/devices/i2c-*; do
            case "$(cat $d/name)" in *virtio*) bus=${d##*/i2c-} ;; esac
        done
        echo "adapter=$bus"
        echo "name=$(cat /sys/bus/i2c/devices/i2c-$bus/name)"
        echo "found=$(i2cdetect -y $bus | tail -n +2 | cut -c5- | tr ' ' '\\n' | grep -E '^[0-9a-f]{2}$' | tr '\\n' ' ')"
        # Two page writes on either side of the boundary at 0x120, then one read across it.
        i2ctransfer -y $bus w4@0x50 0x01 0x1e 0x11 0x22
        i2ctransfer -y $bus w4@0x50 0x01 0x20 0x33 0x44
        i2ctransfer -y $bus w2@0x50 0x01 0x1e
        echo "across=$(i2ctransfer -y $bus r4@0x50)"
        # A page write that runs past the end of its page wraps to the page's start.
        i2ctransfer -y $bus w6@0x50 0x02 0x1e 0xa1 0xa2 0xa3 0xa4
        i2ctransfer -y $bus w2@0x50 0x02 0x00
        echo "wrapped=$(i2ctransfer -y $bus r2@0x50)"
        i2ctransfer -y $bus w2@0x50 0x02 0x1e
        echo "page_end=$(i2ctransfer -y $bus r2@0x50)"
        # The sensor: select the temperature register, read it.
        i2ctransfer -y $bus w1@0x48 0x00
        echo "temperature=$(i2ctransfer -y $bus r2@0x48)"
        echo "receive_byte=$(i2cget -y $bus 0x48)"
        # Combined write+read transactions: SMBus read word data, and an EEPROM random read.
        echo "read_word=$(i2cget -y $bus 0x48 0 w)"
        echo "random_read=$(i2ctransfer -y $bus w2@0x50 0x01 0x1f r2)"
        if i2cget -y $bus 0x51 2>/dev/null; then echo "refused=no"; else echo "refused=yes"; fi
        """

    @Test func guestDrivesTheSimulatedEEPROMAndSensorThroughI2CVirtio() throws {
        let eeprom = FileManager.default.temporaryDirectory.appendingPathComponent("vhu-i2c-guest-\(UUID().uuidString.prefix(8)).bin").path
        defer { try? FileManager.default.removeItem(atPath: eeprom) }
        let result = try GuestTestBed.run(
            daemons: [GuestDaemon(executable: "vhost-user-i2c",
                                  arguments: ["--eeprom", "addr=0x50,size=4096,page=32,file=\(eeprom)", "--sensor", "addr=0x48,temp=21.5"],
                                  qemuDevice: "vhost-user-i2c-pci")],
            modules: [], script: Self.script, timeout: .seconds(180), machine: .customKernel)
        #expect(result.status == 0, "guest output:\n\(result.output)\nconsole:\n\(result.consoleLog.suffix(3000))")
        let v = result.values
        #expect(v["name"]?.contains("virtio") == true, "adapter name: \(v["name"] ?? "none")")
        // i2cdetect shows exactly the two clients on the bus.
        #expect(v["found"]?.split(separator: " ") == ["48", "50"], "i2cdetect found: \(v["found"] ?? "nothing")")
        #expect(v["across"] == "0x11 0x22 0x33 0x44", "read across the page boundary: \(v["across"] ?? "none")")
        #expect(v["wrapped"] == "0xa3 0xa4" && v["page_end"] == "0xa1 0xa2", "page wrap: \(v["wrapped"] ?? "none") / \(v["page_end"] ?? "none")")
        // 21.5 °C: 0x15 0x80.
        #expect(v["temperature"] == "0x15 0x80", "temperature register: \(v["temperature"] ?? "none")")
        #expect(v["receive_byte"] == "0x15", "receive byte: \(v["receive_byte"] ?? "none")")
        #expect(v["read_word"] == "0x8015", "read word data (LSB first): \(v["read_word"] ?? "none")")
        #expect(v["random_read"] == "0x22 0x33", "random read: \(v["random_read"] ?? "none")")
        #expect(v["refused"] == "yes")
        // The data is in the host's backing file.
        let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: eeprom)))
        #expect(file.count == 4096)
        #expect(Array(file[0x11e...0x121]) == [0x11, 0x22, 0x33, 0x44], "the file holds \(Array(file[0x11e...0x121]))")
        #expect(Array(file[0x21e...0x21f]) == [0xa1, 0xa2] && Array(file[0x200...0x201]) == [0xa3, 0xa4])
    }
}
