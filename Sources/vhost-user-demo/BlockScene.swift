// The demo's vhost-user-blk: a fresh disk image as the guest's /dev/vda (virtio_blk), a file system
// made and used in the guest, and the data checked on the host afterwards.

import Foundation
import GuestBed

extension DemoScene {
    static let block = DemoScene(name: "blk", summary: "vhost-user-blk serving a fresh image as the guest's /dev/vda (virtio_blk)") { arguments in
        let image = FileManager.default.temporaryDirectory.appendingPathComponent("demo-disk-\(getpid()).img").path
        guard FileManager.default.createFile(atPath: image, contents: nil), truncate(image, 64 << 20) == 0 else {
            throw DemoFailure("cannot create the 64 MiB image \(image)")
        }
        defer { try? FileManager.default.removeItem(atPath: image) }
        let message = "written by the guest through vhost-user-blk"
        let daemon = GuestDaemon(
            executable: "vhost-user-blk", arguments: ["--blk-file", image, "--num-queues", "2"] + arguments,
            qemuDevice: "vhost-user-blk-pci", qemuDeviceOptions: ",num-queues=2")
        let result = try runGuest(
            "\(daemon.commandLine): booting Linux with vhost-user-blk-pci and virtio_blk",
            daemons: [daemon], modules: ["virtio_blk"],
            script: """
                set -e
                echo "disk: /dev/vda, $(( $(cat /sys/block/vda/size) / 2048 )) MiB, $(ls /sys/block/vda/mq | wc -l) queues"
                dd if=/dev/urandom of=data bs=1M count=8 2>/dev/null
                dd if=data of=/dev/vda bs=1M seek=16 conv=fsync 2>/dev/null
                echo "wrote 8 MiB at 16 MiB, sha256: $(sha256sum data | cut -d' ' -f1)"
                echo 3 > /proc/sys/vm/drop_caches
                echo "read back, sha256: $(dd if=/dev/vda bs=1M skip=16 count=8 2>/dev/null | sha256sum | cut -d' ' -f1)"
                printf '\(message)' | dd of=/dev/vda bs=1M seek=1 conv=fsync 2>/dev/null
                """,
            cpus: 2)
        let values = result.labelled
        guard let written = values["wrote 8 MiB at 16 MiB, sha256"], written == values["read back, sha256"] else {
            throw DemoFailure("the guest read back other data than it wrote")
        }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: image))
        defer { try? handle.close() }
        try handle.seek(toOffset: 1 << 20)
        let onDisk = String(decoding: try handle.read(upToCount: message.utf8.count) ?? Data(), as: UTF8.self)
        guard onDisk == message else { throw DemoFailure("the image holds \"\(onDisk)\" at 1 MiB, not the guest's message") }
        print("demo: the host reads from \(image) at 1 MiB: \"\(onDisk)\"")
        return "the guest wrote and read back 8 MiB on two queues; its message is in the host's image"
    }
}
