// vhost-user-rpmb in a real guest. Linux has no virtio-rpmb driver and QEMU no vhost-user-rpmb device:
// the rebuilt QEMU's generic vhost-user-device-pci (GuestMachine.genericDevice) puts the daemon on the
// guest's virtio bus, and the guest checks what a user can see without a driver: the virtio device id
// (28), the PCI ids, and the feature bits and config space the daemon serves, read by the rpmbprobe
// guest tool through the PCI configuration access capability.

import Foundation
import GuestBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct RPMBGuestTests {
    static let script = """
        set -e
        echo "rpmb_devices=$(grep -l 0x001c /sys/bus/virtio/devices/*/device | wc -l)"
        for d in /sys/bus/virtio/devices/*; do
            [ "$(cat $d/device)" = 0x001c ] || continue
            echo "device=$(cat $d/device)"
            echo "vendor=$(cat $d/vendor)"
            if [ -e $d/driver ]; then echo "driver=$(basename $(readlink $d/driver))"; else echo "driver=none"; fi
        done
        rpmbprobe
        """

    @Test func theDeviceIsOnTheGuestsVirtioBusWithIdAndConfigAsTheDaemonServesThem() throws {
        let directory = try TemporaryImageDirectory()
        let image = "\(directory.path)/rpmb.img"
        let create = Process()
        create.executableURL = URL(fileURLWithPath: "\(GuestTestBed.binaryDirectory)/vhost-user-rpmb")
        create.arguments = ["--create", "--image", image, "--capacity", "384K"]
        try create.run()
        create.waitUntilExit()
        #expect(create.terminationStatus == 0)

        let result = try GuestTestBed.run(
            daemons: [GuestDaemon(executable: "vhost-user-rpmb",
                                  arguments: ["--image", image, "--max-write-blocks", "5", "--max-read-blocks", "9"],
                                  qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=28,num_vqs=1,config_size=3")],
            modules: [], script: Self.script, timeout: .seconds(180), machine: .genericDevice, tools: ["rpmbprobe"])
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let values = result.values
        #expect(values["rpmb_devices"] == "1", "virtio devices with id 28: \(values["rpmb_devices"] ?? "none")")
        #expect(values["device"] == "0x001c")
        #expect(values["vendor"] == "0x1af4" || values["vendor"] == "0x554d4551", "vendor: \(values["vendor"] ?? "none")")
        // No guest driver binds (Linux has none for virtio-rpmb).
        #expect(values["driver"] == "none")
        // The device's feature bits as the daemon offers them (read by rpmbprobe from the common
        // configuration; the virtio bus's `features` file stays zero without a driver): virtio-rpmb has
        // no device-specific bits (0-23, virtio 1.2, 5.12.3), the kit's ring bits and VERSION_1 are set.
        let features = values["device_features"].flatMap { UInt64($0.dropFirst(2), radix: 16) }
        #expect(features.map { $0 & 0xff_ffff } == 0, "device_features: \(values["device_features"] ?? "none")")
        #expect(features.map { $0 & (1 << 32 | 1 << 29 | 1 << 28) } == 1 << 32 | 1 << 29 | 1 << 28,
                "device_features: \(values["device_features"] ?? "none")")
        #expect(values["num_queues"] == "1")
        // struct virtio_rpmb_config as the daemon serves it: 384 KiB = 3 units of 128 KiB, 5, 9.
        #expect(values["capacity"] == "3", "guest output:\n\(result.output)")
        #expect(values["max_wr_cnt"] == "5", "guest output:\n\(result.output)")
        #expect(values["max_rd_cnt"] == "9", "guest output:\n\(result.output)")
    }
}

/// A directory for the test's image, removed afterwards.
final class TemporaryImageDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rpmb-guest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
