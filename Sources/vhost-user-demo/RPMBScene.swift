// The demo's vhost-user-rpmb: a fresh image (`vhost-user-rpmb --create`) attached through the generic
// vhost-user-device-pci of the rebuilt QEMU (Linux has no virtio-rpmb driver): the guest finds the
// device on its virtio bus with id 28 and reads, with the rpmbprobe guest tool, the feature bits and
// the config space the daemon serves.

import Foundation
import GuestBed

extension DemoScene {
    static let rpmb = DemoScene(name: "rpmb", summary: "vhost-user-rpmb on the generic vhost-user device: virtio id 28 and its config in the guest") { arguments in
        let image = FileManager.default.temporaryDirectory.appendingPathComponent("demo-rpmb-\(getpid()).img").path
        defer { try? FileManager.default.removeItem(atPath: image) }
        try createRPMBImage(image, capacity: "1M")
        // The block limits the guest must see: the demo's, or the ones given on the command line.
        let daemonArguments = ["--image", image, "--max-write-blocks", "8", "--max-read-blocks", "16"] + arguments
        let expected = ["capacity": "8", "max_wr_cnt": lastValue(of: "--max-write-blocks", in: daemonArguments),
                        "max_rd_cnt": lastValue(of: "--max-read-blocks", in: daemonArguments)]
        let daemon = GuestDaemon(
            executable: "vhost-user-rpmb", arguments: daemonArguments,
            qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=28,num_vqs=1,config_size=3")
        let result = try runGuest(
            "\(daemon.commandLine): booting Linux with vhost-user-device-pci (virtio-id=28), no driver, rpmbprobe",
            daemons: [daemon], modules: [],
            script: """
                set -e
                for d in /sys/bus/virtio/devices/*; do
                    [ "$(cat $d/device)" = 0x001c ] || continue
                    echo "virtio device: $(basename $d), id $(cat $d/device) (RPMB), driver: $([ -e $d/driver ] && basename $(readlink $d/driver) || echo none)"
                done
                rpmbprobe | sed 's/=/: /'
                """,
            machine: .genericDevice, tools: ["rpmbprobe"])
        let values = result.labelled
        guard values["virtio device"]?.contains("id 0x001c") == true else {
            throw DemoFailure("the guest has no virtio device with id 28")
        }
        for (field, value) in expected.sorted(by: { $0.key < $1.key }) where values[field] != value {
            throw DemoFailure("the guest reads \(field) \(values[field] ?? "nothing"), the daemon serves \(value)")
        }
        return "the guest sees virtio id 28 with capacity 1 MiB (8 × 128 KiB), max_wr_cnt \(expected["max_wr_cnt"]!), max_rd_cnt \(expected["max_rd_cnt"]!)"
    }

    /// `vhost-user-rpmb --create`: a new image without a key.
    private static func createRPMBImage(_ path: String, capacity: String) throws {
        let create = Process()
        create.executableURL = URL(fileURLWithPath: "\(GuestTestBed.binaryDirectory)/vhost-user-rpmb")
        create.arguments = ["--create", "--image", path, "--capacity", capacity]
        print("demo: vhost-user-rpmb --create --image \(path) --capacity \(capacity)")
        try create.run()
        create.waitUntilExit()
        guard create.terminationStatus == 0 else { throw DemoFailure("vhost-user-rpmb --create exited with status \(create.terminationStatus)") }
    }

    /// The value after the last `option` in `arguments` (the one the daemon's parser keeps).
    private static func lastValue(of option: String, in arguments: [String]) -> String {
        guard let i = arguments.lastIndex(of: option), i + 1 < arguments.count else { return "" }
        return arguments[i + 1]
    }
}
