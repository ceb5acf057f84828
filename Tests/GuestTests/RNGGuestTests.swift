// vhost-user-rng in a real guest: QEMU's vhost-user-rng-pci, Linux's virtio_rng driver, /dev/hwrng.

import Foundation
import GuestBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct RNGGuestTests {
    /// Reads 1 MiB from /dev/hwrng twice; prints `key=value` lines.
    static let script = """
        set -e
        echo "rng_current=$(cat /sys/class/misc/hw_random/rng_current)"
        head -c 1048576 /dev/hwrng > a
        head -c 1048576 /dev/hwrng > b
        for f in a b; do
            echo "$f.bytes=$(wc -c < $f)"
            echo "$f.sha256=$(sha256sum $f | cut -d' ' -f1)"
            echo "$f.nonzero=$(tr -d '\\000' < $f | wc -c)"
            echo "$f.distinct=$(head -c 4096 $f | od -An -v -tu1 -w1 | sort -u | wc -l)"
        done
        """

    @Test func guestReadsRandomBytesFromHwrngBackedByTheDaemon() throws {
        let result = try GuestTestBed.run(
            daemons: [GuestDaemon(executable: "vhost-user-rng", qemuDevice: "vhost-user-rng-pci")],
            modules: ["virtio_rng"], script: Self.script, timeout: .seconds(180))
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let values = result.values

        #expect(values["rng_current"]?.hasPrefix("virtio_rng") == true, "rng_current: \(values["rng_current"] ?? "none")")
        for file in ["a", "b"] {
            #expect((Int(values["\(file).bytes"] ?? "") ?? 0) >= 1_048_576, "\(file): \(values["\(file).bytes"] ?? "none") bytes")
            // Random bytes are zero 1 time in 256: about 1044480 of 1 MiB are not.
            #expect((Int(values["\(file).nonzero"] ?? "") ?? 0) > 1_000_000, "\(file): \(values["\(file).nonzero"] ?? "none") non-zero bytes")
            // 4096 random bytes take all 256 values but for a few.
            #expect((Int(values["\(file).distinct"] ?? "") ?? 0) > 200, "\(file): \(values["\(file).distinct"] ?? "none") distinct byte values")
        }
        #expect(values["a.sha256"] != nil && values["a.sha256"] != values["b.sha256"], "two reads gave the same bytes")
    }
}
