// The demo's vhost-user-rng: the guest's /dev/hwrng served by the daemon through virtio_rng.

import GuestBed

extension DemoScene {
    static let rng = DemoScene(name: "rng", summary: "vhost-user-rng serving the guest's /dev/hwrng (virtio_rng)") { arguments in
        let bytes = 1_048_576
        let daemon = GuestDaemon(executable: "vhost-user-rng", arguments: arguments, qemuDevice: "vhost-user-rng-pci")
        let result = try runGuest(
            "\(daemon.commandLine): booting Linux under QEMU (TCG) with vhost-user-rng-pci and virtio_rng",
            daemons: [daemon],
            modules: ["virtio_rng"],
            script: """
                set -e
                echo "kernel: $(uname -r)"
                echo "rng_current: $(cat /sys/class/misc/hw_random/rng_current)"
                head -c \(bytes) /dev/hwrng > rng
                echo "bytes read from /dev/hwrng: $(wc -c < rng)"
                echo "sha256: $(sha256sum rng | cut -d' ' -f1)"
                echo "first 64 bytes:"
                head -c 64 rng | hexdump -C
                """)
        let values = result.labelled
        guard let current = values["rng_current"], current.hasPrefix("virtio_rng") else {
            throw DemoFailure("the guest's current hwrng is \(values["rng_current"] ?? "unknown"), not virtio_rng")
        }
        guard values["bytes read from /dev/hwrng"] == String(bytes) else {
            throw DemoFailure("the guest read \(values["bytes read from /dev/hwrng"] ?? "no") bytes from /dev/hwrng, not \(bytes)")
        }
        return "the guest read \(bytes) bytes from virtio_rng through vhost-user-rng"
    }
}
