// vhost-user-blk on network storage in a real guest: one boot with two disks, /dev/vda on a Ceph RBD
// image (a throwaway cluster) and /dev/vdb on an NBD export (nbdkit serving a file).
//
// The guest writes the same data to both, reads it back and discards a range on each; on the host,
// after QEMU exits, `rbd export` and the NBD server's file hold what the guest read, and
// `qemu-img compare` finds the two disks identical. Then the engines fail under the guest's I/O:
// the OSD stops, the NBD server stops; the guest's writes wait, and complete once the engine is
// restarted, with no error in the guest.

import Foundation
import GuestBed
import Glibc
import NetworkStorageBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"),
       .enabled(if: CephCluster.unavailableReason == nil && NBDServer.unavailableReason == nil,
                "SKIPPED: \(CephCluster.unavailableReason ?? NBDServer.unavailableReason ?? "")"),
       .serialized)
struct NetworkBlockGuestTests {
    static let mib = 1 << 20

    @Test func guestUsesRBDAndNBDDisksThroughEngineFailures() throws {
        let cluster = try CephCluster(durable: true)  // its OSD is stopped and restarted
        defer { cluster.stop() }
        let spec = try cluster.createImage("guest", megabytes: 64)
        let server = try NBDServer(sizeBytes: 64 * Self.mib)
        let daemons = [
            GuestDaemon(executable: "vhost-user-blk", arguments: ["--rbd", spec, "--ceph-conf", cluster.configFile],
                        qemuDevice: "vhost-user-blk-pci"),
            GuestDaemon(executable: "vhost-user-blk", arguments: ["--nbd", server.uri], qemuDevice: "vhost-user-blk-pci"),
        ]
        let script = """
            set -e
            sha() { sha256sum | cut -d' ' -f1; }
            for d in vda vdb; do echo "$d.size=$(cat /sys/block/$d/size)"; echo "$d.discard=$(cat /sys/block/$d/queue/discard_max_bytes)"; done
            head -c 4194304 /dev/urandom > p
            echo "pattern=$(sha < p)"
            for d in vda vdb; do
                dd if=p of=/dev/$d bs=256k seek=4 oflag=direct conv=notrunc 2>/dev/null
                echo "$d.readback=$(dd if=/dev/$d bs=256k skip=4 count=16 iflag=direct 2>/dev/null | sha)"
                blkdiscard -o 2097152 -l 1048576 /dev/$d
                echo "$d.discarded.nonzero=$(dd if=/dev/$d bs=64k skip=32 count=16 iflag=direct 2>/dev/null | tr -d '\\000' | wc -c)"
            done
            sync
            # The engines fail under I/O: the host stops the OSD (vda), then the NBD server (vdb), and restarts each.
            head -c 1048576 /dev/urandom > q
            echo "late=$(sha < q)"
            for d in vda vdb; do
                echo "@@fail-$d"
                read -r go <&3
                dd if=q of=/dev/$d bs=256k seek=128 oflag=direct conv=notrunc 2>/dev/null &
                w=$!
                echo "@@writing-$d"
                wait $w && echo "$d.late.dd=ok" || echo "$d.late.dd=failed"
                echo "$d.late.readback=$(dd if=/dev/$d bs=256k skip=128 count=4 iflag=direct 2>/dev/null | sha)"
            done
            echo "io_errors=$(dmesg | grep -c -i -E 'I/O error|blk_update_request' || true)"
            """
        let result = try GuestTestBed.run(
            daemons: daemons, modules: ["virtio_blk"], script: script, timeout: .seconds(180),
            hostAction: { control in
                try control.waitForLine("@@fail-vda", timeout: .seconds(120))
                try cluster.stopOSD()
                try control.send("go")
                try control.waitForLine("@@writing-vda", timeout: .seconds(30))
                try cluster.startOSD()
                try control.waitForLine("@@fail-vdb", timeout: .seconds(60))
                server.stop()
                try control.waitForDaemonLine(1, containing: "connection lost", timeout: .seconds(30))
                try control.send("go")
                try control.waitForLine("@@writing-vdb", timeout: .seconds(30))
                try server.start()
            })
        print("guestUsesRBDAndNBDDisksThroughEngineFailures: \(result.elapsed)\n\(result.output)\n\(result.daemonLogs.joined(separator: "\n"))")
        #expect(result.status == 0, "guest output:\n\(result.output)\nconsole:\n\(result.consoleLog.suffix(3000))")
        let v = result.values
        for d in ["vda", "vdb"] {
            #expect(v["\(d).size"] == "131072")
            #expect((Int(v["\(d).discard"] ?? "") ?? 0) > 0)
            #expect(v["pattern"] != nil && v["\(d).readback"] == v["pattern"], "\(d) read back other data")
            #expect(v["\(d).discarded.nonzero"] == "0")
            #expect(v["\(d).late.dd"] == "ok", "\(d): the write across the engine failure")
            #expect(v["late"] != nil && v["\(d).late.readback"] == v["late"])
        }
        #expect(v["io_errors"] == "0")

        // On the host: the engines' own tools.
        let exported = cluster.directory + "/guest.raw"
        try cluster.rbd(["export", "--no-progress", spec, exported])
        let difference = try EngineTools.compareRawImages(exported, server.image)
        #expect(difference == nil, "qemu-img compare: the RBD and NBD disks differ:\n\(difference ?? "")")
        #expect(try EngineTools.sha256(exported, offset: 32 * Self.mib, count: Self.mib) == v["late"])
        let discarded = try EngineTools.sha256(exported, offset: 2 * Self.mib, count: Self.mib)
        #expect(discarded == (try EngineTools.sha256("/dev/zero", offset: 0, count: Self.mib)), "the discarded MiB reads as zeroes")
        for log in result.daemonLogs { #expect(!log.contains("critical")) }
        #expect(result.elapsed < .seconds(90))
    }

    /// Live migration between two daemons on one RBD image, both with --lock-handover: the destination's
    /// daemon opens the image while the source's holds its exclusive lock, and takes the lock when its
    /// rings start, after the source's stopped and let go; MigrationGuestTests' checks, the patterns read
    /// back through `rbd export`.
    @Test func guestMigratesBetweenTwoDaemonsOnOneRBDImage() throws {
        let cluster = try CephCluster.shared()
        let (local, expected) = try MigrationGuestTests.makeImage()
        defer { try? FileManager.default.removeItem(atPath: local) }
        let spec = "\(cluster.pool)/migration-\(UInt32.random(in: 0...UInt32.max))"
        try cluster.rbd(["import", "--no-progress", local, spec])
        defer { _ = try? cluster.rbd(["rm", "--no-progress", spec]) }
        let disk = ["--rbd", spec, "--ceph-conf", cluster.configFile, "--lock-handover"]
        let (result, during) = try MigrationGuestTests.migrate(source: MigrationGuestTests.blk(disk), destination: MigrationGuestTests.blk(disk))
        print("guestMigratesBetweenTwoDaemonsOnOneRBDImage: \(result.guest.elapsed), \(during) round(s) during the migration\n\(result.guest.output)")
        let exported = cluster.directory + "/migrated.raw"
        defer { unlink(exported) }
        try cluster.rbd(["export", "--no-progress", spec, exported])
        try MigrationGuestTests.expectMigrated(result, during: during, image: exported, expected: expected)
    }
}
