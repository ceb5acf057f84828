// Live migration of a guest using vhost-user-blk between two unmodified QEMUs, each with its own
// daemon on the same image: I/O runs through the migration, and the pages the daemon writes into
// guest memory (disk reads into the page cache) after RAM's first pass must reach the destination.

import Foundation
import GuestBed
import Glibc
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"), .serialized)
struct MigrationGuestTests {
    static let mib = 1 << 20
    /// Where the host puts the data the guest reads into its page cache during the migration.
    static let cachedOffsetMiB = 256, cachedMiB = 32

    /// The guest: background rounds of O_DIRECT write + read-back (alternating CPUs, so both queues),
    /// a page cache filled from the disk once RAM has been sent once, then on the destination that
    /// cache re-checked from RAM (no disk reads: the sector count does not move) and every round's
    /// pattern read back from the disk.
    static let script = """
        set -o pipefail
        sha() { sha256sum | cut -d' ' -f1; }
        io_errors() { dmesg | grep -c -i -E 'I/O error|blk_update_request|critical' || true; }
        sectors() { awk '{ print $3 }' /sys/block/vda/stat; }
        echo "queues=$(ls /sys/block/vda/mq | wc -l)"
        # Linux drops a block device's page cache when its last opener closes it: keep it open.
        exec 4< /dev/vda
        round() {
            head -c 262144 /dev/urandom > /tmp/p$1
            p=$(sha < /tmp/p$1)
            taskset $(($1 % 2 + 1)) dd if=/tmp/p$1 of=/dev/vda bs=64k seek=$(($1 * 64)) count=4 oflag=direct conv=notrunc 2>/dev/null || echo "write.failed=$1"
            r=$(taskset $(($1 % 2 + 1)) dd if=/dev/vda bs=64k skip=$(($1 * 64)) count=4 iflag=direct 2>/dev/null | sha)
            [ "$r" = "$p" ] || echo "readback.mismatch=$1"
            rm /tmp/p$1
            echo "$1 $p" >> /tmp/patterns
            echo "round $1 $p"
        }
        # Dirties memory all the time: the migration cannot converge until the host raises its downtime limit.
        ( while :; do dd if=/dev/urandom of=/tmp/spin bs=64k count=16 2>/dev/null; done ) &
        spin=$!
        ( i=0; while [ ! -e /tmp/stop ] && [ $i -lt 60 ]; do round $i; i=$((i + 1)); done ) &
        io=$!
        read -r go <&3
        dd if=/dev/vda bs=1M skip=\(cachedOffsetMiB) count=\(cachedMiB) 2>/dev/null | sha > /tmp/cached
        echo "cached=$(cat /tmp/cached)"
        echo "@@cached"
        read -r migrated <&3
        touch /tmp/stop
        wait $io
        kill $spin
        round 60
        round 61
        before=$(sectors)
        v=$(dd if=/dev/vda bs=1M skip=\(cachedOffsetMiB) count=\(cachedMiB) 2>/dev/null | sha); echo "recheck=$v"
        echo "recheck.sectors=$(($(sectors) - before))"
        n=0
        while read -r i p; do
            r=$(dd if=/dev/vda bs=64k skip=$((i * 64)) count=4 iflag=direct 2>/dev/null | sha)
            [ "$r" = "$p" ] || echo "final.mismatch=$i"
            n=$((n + 1))
        done < /tmp/patterns
        echo "final.checked=$n"
        echo "io_errors=$(io_errors)"
        """

    static func blk(_ disk: [String], environment: [String] = []) -> GuestDaemon {
        GuestDaemon(
            command: ["/usr/bin/env"] + environment + ["\(GuestTestBed.binaryDirectory)/vhost-user-blk", "--socket-path", "{socket}"]
                + disk + ["--num-queues", "2", "--log-level", "debug"],
            readinessLine: "listening on {socket}", qemuDevice: "vhost-user-blk-pci", qemuDeviceOptions: ",num-queues=2")
    }

    /// A raw image with the data the guest caches at its place; returns the image and the data's checksum.
    static func makeImage() throws -> (image: String, expected: String) {
        let image = FileManager.default.temporaryDirectory.appendingPathComponent("migration-\(UUID().uuidString.prefix(8)).img").path
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        guard truncate(image, off_t((cachedOffsetMiB + cachedMiB) * mib)) == 0 else { throw GuestTestBedError("truncate: errno \(errno)") }
        var data = Data(count: cachedMiB * mib)
        data.withUnsafeMutableBytes { for i in stride(from: 0, to: $0.count, by: 8) { $0.storeBytes(of: UInt64(i).multipliedReportingOverflow(by: 0x9E37_79B9_7F4A_7C15).partialValue, toByteOffset: i, as: UInt64.self) } }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.seek(toOffset: UInt64(cachedOffsetMiB * mib))
        try handle.write(contentsOf: data)
        try handle.close()
        return (image, try BlockGuestTests.sha256(data))
    }

    /// Migrates the guest from `source` to `destination`; returns the result and the rounds that ran on
    /// the source while it migrated.
    static func migrate(source: GuestDaemon, destination: GuestDaemon) throws -> (MigrationResult, duringMigration: Int) {
        nonisolated(unsafe) var roundsBefore = 0, roundsAfter = 0
        func rounds(_ text: String) -> Int { text.split(separator: "\n").filter { $0.hasPrefix("round ") }.count }
        let result = try MigrationTestBed.run(
            source: source, destination: destination, modules: ["virtio_blk"],
            script: script, timeout: .seconds(150), cpus: 2, memoryMiB: 256,
            // Debian's kernel zeroes every page it allocates: the CPU's write would make QEMU send the
            // page cache's pages again whatever the daemon logs. Without it, only the daemon's log can.
            kernelArguments: "init_on_alloc=0"
        ) { control in
            try control.waitForLine(on: .source, timeout: .seconds(60)) { $0.hasPrefix("round 2 ") }
            roundsBefore = rounds(control.output(of: .source))
            // Held: at 16 MiB/s a 1 ms downtime allows 4 pages left over, fewer than the guest keeps dirtying.
            try control.startMigration(["downtime-limit": 1, "max-bandwidth": 16 * mib])
            try control.waitForFirstPass(timeout: .seconds(60))
            try control.send("go", to: .source)
            try control.waitForLine("@@cached", on: .source, timeout: .seconds(60))
            // Released: now the remaining pages fit the downtime.
            try control.setParameters(["downtime-limit": 5000, "max-bandwidth": 4096 * mib])
            try control.finishMigration(timeout: .seconds(60))
            roundsAfter = rounds(control.output(of: .source))
            try control.send("migrated", to: .destination)
        }
        return (result, roundsAfter - roundsBefore)
    }

    /// What every migration must show: I/O during and after it, the page cache intact and from RAM,
    /// every round's pattern in the guest and in `image` (the disk's bytes on the host), no I/O error.
    static func expectMigrated(_ result: MigrationResult, during: Int, image: String, expected: String) throws {
        let guest = result.guest
        #expect(guest.status == 0, "guest output:\n\(guest.output)\nconsole:\n\(guest.consoleLog.suffix(3000))")
        let v = guest.values
        #expect(v["queues"] == "2")
        #expect(result.migration.contains("\"status\":\"completed\""))
        #expect(during >= 1, "no I/O round ran while the guest migrated")
        #expect(result.destinationOutput.contains("round 61 "), "no I/O round ran on the destination")
        // The page cache filled during the migration arrived intact, and came from RAM.
        #expect(v["cached"] == expected)
        #expect(v["recheck"] == expected)
        #expect(v["recheck.sectors"] == "0")
        // Every pattern, written before, during and after the migration, reads back in the guest and in the image.
        #expect(!guest.output.contains("mismatch") && !guest.output.contains("failed"), "\(guest.output)")
        let patterns = guest.output.split(separator: "\n").filter { $0.hasPrefix("round ") }.map { $0.split(separator: " ") }
        #expect(v["final.checked"] == String(patterns.count))
        for p in patterns {
            let i = Int(p[1])!
            #expect(try BlockGuestTests.sha256(image, offset: i * 64 * 65536, count: 262_144) == String(p[2]), "round \(i) in the image")
        }
        #expect(v["io_errors"] == "0")
        // The source daemon's rings were stopped by the migration (GET_VRING_BASE) with nothing in flight.
        let source = guest.daemonLogs[0]
        #expect(source.contains("queue 0 stopped at") && source.contains("queue 1 stopped at"), "\(source.suffix(3000))")
        #expect(source.contains("dirty log:"), "the source never got a dirty log")
        for log in guest.daemonLogs { BlockGuestTests.expectCleanLog(log) }
    }

    @Test func blockGuestMigratesWithIORunningAndItsPageCacheIntact() throws {
        let (image, expected) = try Self.makeImage()
        defer { try? FileManager.default.removeItem(atPath: image) }
        let (result, during) = try Self.migrate(source: Self.blk(["--blk-file", image]), destination: Self.blk(["--blk-file", image]))
        print("blockGuestMigrates: \(result.guest.elapsed), \(during) round(s) during the migration\n\(result.guest.output)\n\(result.migration)")
        try Self.expectMigrated(result, during: during, image: image, expected: expected)
    }

    @Test func withoutDirtyBufferLoggingTheMigratedPageCacheIsWrong() throws {
        let (image, expected) = try Self.makeImage()
        defer { try? FileManager.default.removeItem(atPath: image) }
        let (result, _) = try Self.migrate(source: Self.blk(["--blk-file", image], environment: ["VHOST_USER_DEVICES_TEST_IGNORE_DIRTY_BUFFERS=1"]),
                                           destination: Self.blk(["--blk-file", image]))
        let v = result.guest.values
        print("withoutDirtyBufferLogging: \(result.guest.elapsed)\n\(result.guest.output)")
        #expect(v["cached"] == expected)
        #expect(v["recheck.sectors"] == "0")
        #expect(v["recheck"] != expected, "the page cache survived without the daemon logging its writes: the test could not see a lost page")
    }
}
