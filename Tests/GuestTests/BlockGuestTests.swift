// vhost-user-blk in a real guest: QEMU's vhost-user-blk-pci, Linux's virtio_blk driver, /dev/vda.
//
// Data written by the guest lands in the host's image (checked on the host after QEMU exits),
// DISCARD punches the range out, a read-only daemon gives a read-only disk, the guest sees the
// image grow while it runs, and the daemon can be killed and restarted under the guest's I/O
// without the guest noticing (QEMU reconnects, in-flight requests are resubmitted).

import Foundation
import GuestBed
import Glibc
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"), .serialized)
struct BlockGuestTests {
    static let mib = 1 << 20

    /// A fresh sparse image of `size` bytes in the temporary directory; the caller removes it.
    static func makeImage(size: Int, contents: Data? = nil) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("blk-guest-\(UUID().uuidString.prefix(8)).img").path
        if let contents { try contents.write(to: URL(fileURLWithPath: path)) }
        else { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard truncate(path, off_t(size)) == 0 else { throw GuestTestBedError("truncate \(path): errno \(errno)") }
        return path
    }

    static func read(_ path: String, offset: Int, count: Int) throws -> Data {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        return try handle.read(upToCount: count) ?? Data()
    }

    /// The SHA-256 of `data` in hex, by the host's sha256sum.
    static func sha256(_ data: Data) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("blk-sha-\(UUID().uuidString.prefix(8))")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    static func sha256(_ path: String, offset: Int, count: Int) throws -> String {
        try sha256(read(path, offset: offset, count: count))
    }

    static func blk(_ image: String, _ arguments: [String] = [], queues: Int = 1, reconnect: Bool = false) -> GuestDaemon {
        GuestDaemon(
            executable: "vhost-user-blk", arguments: ["--blk-file", image] + arguments,
            qemuDevice: "vhost-user-blk-pci", qemuDeviceOptions: ",num-queues=\(queues)",
            qemuChardevOptions: reconnect ? ",reconnect-ms=500" : "")
    }

    /// The daemon logged no error or warning (e.g. a dropped chain, a refused request).
    static func expectCleanLog(_ log: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let bad = log.split(separator: "\n").filter { $0.hasPrefix("error ") || $0.hasPrefix("warning ") }
        #expect(bad.isEmpty, "the daemon logged:\n\(bad.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }

    /// Shell helpers for the guest scripts.
    static let prelude = """
        set -o pipefail
        sha() { sha256sum | cut -d' ' -f1; }
        io_errors() { dmesg | grep -c -i -E 'I/O error|blk_update_request|critical' || true; }

        """

    // MARK: 1. Data both ways on two queues, DISCARD

    @Test func guestWritesReadsAndDiscardsOnTwoQueues() throws {
        let image = try Self.makeImage(size: 64 * Self.mib)
        defer { try? FileManager.default.removeItem(atPath: image) }

        // 8 MiB of random data at 1 MiB, written half from each CPU (so through each queue), read
        // back with O_DIRECT in 1 MiB requests (up to seg_max segments each: those must fit QEMU's
        // 128-entry rings); then 4-6 MiB of the disk (3-5 MiB of the data) is discarded.
        let script = Self.prelude + """
            set -e
            echo "cpus=$(nproc)"
            echo "queues=$(ls /sys/block/vda/mq | wc -l)"
            echo "size=$(cat /sys/block/vda/size)"
            echo "discard_max=$(cat /sys/block/vda/queue/discard_max_bytes)"
            head -c 8388608 /dev/urandom > p
            v=$(sha < p); echo "pattern=$v"
            v=$(head -c 3145728 p | sha); echo "pattern.head=$v"
            v=$(tail -c 3145728 p | sha); echo "pattern.tail=$v"
            taskset 1 dd if=p of=/dev/vda bs=64k count=64 seek=16 oflag=direct conv=notrunc 2>/dev/null &
            a=$!
            taskset 2 dd if=p of=/dev/vda bs=64k count=64 skip=64 seek=80 oflag=direct conv=notrunc 2>/dev/null &
            b=$!
            wait $a
            wait $b
            sync
            v=$(dd if=/dev/vda bs=1M skip=1 count=8 iflag=direct 2>/dev/null | sha); echo "readback=$v"
            blkdiscard -o 4194304 -l 2097152 /dev/vda
            sync
            v=$(dd if=/dev/vda bs=64k skip=64 count=32 iflag=direct 2>/dev/null | tr -d '\\000' | wc -c)
            echo "discarded.nonzero=$v"
            v=$(dd if=/dev/vda bs=64k skip=16 count=128 iflag=direct 2>/dev/null | sha); echo "after=$v"
            echo "io_errors=$(io_errors)"
            # Completion interrupts of each virtqueue (one MSI-X vector per queue).
            for q in 0 1; do echo "irq.req$q=$(grep "virtio0-req.$q\\$" /proc/interrupts | awk '{ print $2 + $3 }')"; done
            """
        let result = try GuestTestBed.run(
            daemons: [Self.blk(image, ["--num-queues", "2"], queues: 2)], modules: ["virtio_blk"],
            script: script, timeout: .seconds(120), cpus: 2)
        let elapsed = result.elapsed
        print("guestWritesReadsAndDiscardsOnTwoQueues: \(elapsed)\n\(result.output)")
        #expect(result.status == 0, "guest output:\n\(result.output)\nconsole:\n\(result.consoleLog.suffix(3000))")
        let v = result.values

        #expect(v["cpus"] == "2")
        #expect(v["queues"] == "2", "the guest's blk-mq hardware queues: \(v["queues"] ?? "none")")
        #expect(v["size"] == "131072")
        #expect((Int(v["discard_max"] ?? "") ?? 0) > 0, "discard_max_bytes: \(v["discard_max"] ?? "none")")
        #expect(v["pattern"] != nil && v["readback"] == v["pattern"], "the guest read back other data than it wrote")
        #expect(v["discarded.nonzero"] == "0", "the discarded range reads back \(v["discarded.nonzero"] ?? "?") non-zero bytes in the guest")
        #expect(v["io_errors"] == "0")
        // Each CPU wrote 64 requests of 64 KiB through its own queue.
        for queue in ["req0", "req1"] {
            #expect((Int(v["irq.\(queue)"] ?? "") ?? 0) >= 32, "completion interrupts of \(queue): \(v["irq.\(queue)"] ?? "none")")
        }

        // On the host, after QEMU exited: what the guest last read is what the image holds.
        #expect(try Self.sha256(image, offset: Self.mib, count: 8 * Self.mib) == v["after"])
        #expect(try Self.sha256(image, offset: Self.mib, count: 3 * Self.mib) == v["pattern.head"])
        #expect(try Self.sha256(image, offset: 6 * Self.mib, count: 3 * Self.mib) == v["pattern.tail"])
        let discarded = try Self.read(image, offset: 4 * Self.mib, count: 2 * Self.mib)
        #expect(discarded.count == 2 * Self.mib && discarded.allSatisfy { $0 == 0 }, "the discarded range is not zero on the host")
        // DISCARD punches a hole: the range takes no space in the file.
        var status = stat()
        #expect(stat(image, &status) == 0)
        #expect(Int(status.st_blocks) * 512 <= 7 * Self.mib, "the image has \(status.st_blocks) blocks allocated")
        Self.expectCleanLog(result.daemonLogs[0])
        #expect(elapsed < .seconds(60))
    }

    // MARK: 2. Read-only

    @Test func readOnlyDaemonGivesTheGuestAReadOnlyDisk() throws {
        let size = 16 * Self.mib
        let contents = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        let image = try Self.makeImage(size: size, contents: contents)
        defer { try? FileManager.default.removeItem(atPath: image) }
        let before = try Self.sha256(contents)

        let script = Self.prelude + """
            echo "ro=$(cat /sys/block/vda/ro)"
            echo "getro=$(blockdev --getro /dev/vda)"
            v=$(dd if=/dev/vda bs=64k count=256 iflag=direct 2>/dev/null | sha) && echo "read=$v"
            if dd if=/dev/zero of=/dev/vda bs=4k count=1 conv=notrunc 2>err; then echo "write=ok"
            else echo "write=failed"; cat err; fi
            if dd if=/dev/zero of=/dev/vda bs=4k seek=8 count=1 oflag=direct conv=notrunc 2>err; then echo "write.direct=ok"
            else echo "write.direct=failed"; fi
            if blkdiscard -o 0 -l 65536 /dev/vda 2>err; then echo "discard=ok"; else echo "discard=failed"; fi
            sync
            echo "io_errors=$(io_errors)"
            """
        let result = try GuestTestBed.run(
            daemons: [Self.blk(image, ["--read-only"])], modules: ["virtio_blk"],
            script: script, timeout: .seconds(120))
        let elapsed = result.elapsed
        print("readOnlyDaemonGivesTheGuestAReadOnlyDisk: \(elapsed)\n\(result.output)")
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let v = result.values
        #expect(v["ro"] == "1")
        #expect(v["getro"] == "1")
        #expect(v["read"] == before, "the guest read other data than the image holds")
        #expect(v["write"] == "failed")
        #expect(v["write.direct"] == "failed")
        #expect(v["discard"] == "failed")
        #expect(try Self.sha256(image, offset: 0, count: size) == before, "the read-only image changed")
        Self.expectCleanLog(result.daemonLogs[0])
        #expect(elapsed < .seconds(60))
    }

    // MARK: 3. Online resize

    @Test func guestSeesTheImageGrowWhileItRuns() throws {
        let image = try Self.makeImage(size: 64 * Self.mib)
        defer { try? FileManager.default.removeItem(atPath: image) }

        // The guest says when it is ready, then polls the size (up to 30 s); the host grows the
        // image to 96 MiB on that line. The new last MiB is then written and read back.
        let script = Self.prelude + """
            echo "size.before=$(cat /sys/block/vda/size)"
            echo "@@grow"
            i=0
            while [ "$(cat /sys/block/vda/size)" = 131072 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
            echo "size.after=$(cat /sys/block/vda/size)"
            echo "polls=$i"
            echo "blockdev.size=$(blockdev --getsize64 /dev/vda)"
            printf 'written-past-the-old-end' | dd of=/dev/vda bs=1M seek=95 conv=notrunc,fsync 2>/dev/null && echo "write.status=0"
            dd if=/dev/vda of=t bs=1M skip=95 count=1 iflag=direct 2>/dev/null && echo "tail=$(head -c 24 t)"
            dmesg | grep -i 'capacity change' | sed 's/^/dmesg: /'
            echo "io_errors=$(io_errors)"
            """
        let result = try GuestTestBed.run(
            daemons: [Self.blk(image)], modules: ["virtio_blk"], script: script, timeout: .seconds(120)
        ) { control in
            try control.waitForLine("@@grow", timeout: .seconds(60))
            guard truncate(image, off_t(96 * Self.mib)) == 0 else {
                throw GuestTestBedError("truncate \(image): errno \(errno)")
            }
        }
        let elapsed = result.elapsed
        print("guestSeesTheImageGrowWhileItRuns: \(elapsed)\n\(result.output)")
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let v = result.values
        #expect(v["size.before"] == "131072")
        #expect(v["size.after"] == "196608", "the guest's size after the host grew the image: \(v["size.after"] ?? "none")")
        #expect(v["blockdev.size"] == "\(96 * Self.mib)")
        #expect(v["write.status"] == "0")
        #expect(v["tail"] == "written-past-the-old-end")
        #expect(result.output.contains("capacity change"), "the guest kernel logged no capacity change")
        #expect(v["io_errors"] == "0")
        let tail = try Self.read(image, offset: 95 * Self.mib, count: 24)
        #expect(tail == Data("written-past-the-old-end".utf8))
        #expect(result.daemonLogs[0].contains("disk size is now \(96 * Self.mib) bytes"), "daemon log:\n\(result.daemonLogs[0])")
        Self.expectCleanLog(result.daemonLogs[0])
        #expect(elapsed < .seconds(60))
    }

    // MARK: 4. Kill and restart under I/O

    @Test func daemonKilledAndRestartedUnderGuestIOLosesNothing() throws {
        let image = try Self.makeImage(size: 64 * Self.mib)
        defer { try? FileManager.default.removeItem(atPath: image) }

        // 32 MiB of random data written at 1 MiB with O_DIRECT by four dd processes at once (a
        // quarter each, 64 KiB requests), then read back the same way. While they run the guest
        // prints `@@<phase> <sectors done>` (from /sys/block/vda/stat) every 0.1 s; the host kills
        // and restarts the daemon on those lines (up to 5 times a phase), each time once QEMU has
        // reconnected and I/O has moved on since. Every kill leaves the guest with requests
        // outstanding: those the daemon had taken come back from the inflight region (a request
        // takes a host O_DIRECT write or read, so about one kill in ten catches one in the daemon),
        // the rest wait in the ring for the new daemon.
        let script = Self.prelude + """
            alive() { for p in "$@"; do kill -0 $p 2>/dev/null && return 0; done; return 1; }
            watch_io() { # phase w|r, pids
                phase=$1; shift
                read -r r1 r2 rs r4 w1 w2 ws rest < /sys/block/vda/stat
                base=$rs; [ $phase = w ] && base=$ws
                while alive "$@"; do
                    read -r r1 r2 rs r4 w1 w2 ws rest < /sys/block/vda/stat
                    now=$rs; [ $phase = w ] && now=$ws
                    echo "@@$phase $((now - base))"
                    sleep 0.1
                done
                echo "@@$phase-done"
            }
            head -c 33554432 /dev/urandom > p
            v=$(sha < p); echo "pattern=$v"
            # A fifth process flushes the write cache over and over (FLUSH: fdatasync on the host).
            while [ ! -e stop ]; do sync -d /dev/vda; done &
            flusher=$!
            pids=
            for i in 0 1 2 3; do
                dd if=p of=/dev/vda bs=64k skip=$((i * 128)) seek=$((16 + i * 128)) count=128 oflag=direct conv=notrunc 2>w$i.err &
                pids="$pids $!"
            done
            renice -20 -p $$ >/dev/null  # the progress lines come on time
            watch_io w $pids
            renice 0 -p $$ >/dev/null
            status=0
            for p in $pids; do wait $p || status=$?; done
            touch stop; wait $flusher || status=$?
            echo "write.status=$status"; cat w?.err
            pids=
            for i in 0 1 2 3; do
                { dd if=/dev/vda bs=64k skip=$((16 + i * 128)) count=128 iflag=direct 2>r$i.err; echo $? > r$i.status; } | sha > r$i.sha &
                pids="$pids $!"
            done
            renice -20 -p $$ >/dev/null
            watch_io r $pids
            wait
            echo "read.status=$(cat r?.status | sort -u | tr '\n' ' ')"; cat r?.err
            for i in 0 1 2 3; do
                v=$(dd if=p bs=256k skip=$((i * 32)) count=32 2>/dev/null | sha)
                [ "$v" = "$(cat r$i.sha)" ] && echo "readback.$i=ok" || echo "readback.$i=differs"
            done
            echo "io_errors=$(io_errors)"
            dmesg | grep -i -E 'vda|virtio_blk|error' | sed 's/^/dmesg: /'
            """

        final class Kills: @unchecked Sendable {
            let lock = NSLock()
            var at: [String] = []
            func add(_ line: String) { lock.lock(); at.append(line); lock.unlock() }
            var all: [String] { lock.lock(); defer { lock.unlock() }; return at }
        }
        let kills = Kills()
        let result = try GuestTestBed.run(
            daemons: [Self.blk(image, ["--direct", "--log-level", "debug"], reconnect: true)], modules: ["virtio_blk"],
            script: script, timeout: .seconds(150)
        ) { control in
            for phase in ["w", "r"] {
                func progress(_ line: String) -> Int? {
                    line.hasPrefix("@@\(phase) ") ? Int(line.dropFirst(phase.count + 3)) : nil
                }
                var last = 0
                phaseLoop: for _ in 0..<5 {
                    // Kill once the phase has moved 256 KiB on since the new daemon took over, while
                    // its dd processes still run.
                    let line = try control.waitForLine(timeout: .seconds(60)) { line in
                        line == "@@\(phase)-done" || (progress(line) ?? 0) >= last + 512
                    }
                    if line.hasSuffix("-done") { break }
                    try control.restartDaemon(0, signal: SIGKILL)
                    kills.add(line)
                    // QEMU has reconnected once the new daemon runs the ring; what the guest printed
                    // until then (late completions of the old daemon included) does not count.
                    try control.waitForDaemonLine(0, containing: "queue 0 started", timeout: .seconds(30))
                    let seen = control.takeLines()
                    if seen.contains("@@\(phase)-done") { break phaseLoop }
                    last = seen.compactMap(progress).max() ?? progress(line) ?? last
                }
            }
        }
        let elapsed = result.elapsed
        let log = result.daemonLogs[0]
        let resubmitted = log.split(separator: "\n").filter { $0.contains("resubmitting") }
        if let path = ProcessInfo.processInfo.environment["BLOCK_GUEST_TESTS_DAEMON_LOG"] {
            try? log.write(toFile: path, atomically: true, encoding: .utf8)
        }
        print("daemonKilledAndRestartedUnderGuestIOLosesNothing: \(elapsed); kills at \(kills.all)\n"
            + "resubmissions:\n\(resubmitted.joined(separator: "\n"))\n\(result.output)")
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let v = result.values
        #expect(v["write.status"] == "0", "dd writing /dev/vda")
        #expect(v["read.status"] == "0 ", "dd reading /dev/vda")
        #expect(v["io_errors"] == "0", "guest output:\n\(result.output)")
        for i in 0..<4 {
            #expect(v["readback.\(i)"] == "ok", "quarter \(i): the guest read back other data than it wrote")
        }
        #expect(try Self.sha256(image, offset: Self.mib, count: 32 * Self.mib) == v["pattern"], "the image holds other data")
        let all = kills.all
        #expect(all.filter { $0.hasPrefix("@@w ") }.count >= 3, "kills during the write phase: \(all)")
        #expect(all.filter { $0.hasPrefix("@@r ") }.count >= 3, "kills during the read phase: \(all)")
        #expect(all.count >= 6, "kills: \(all)")
        #expect(log.components(separatedBy: "restarted ---").count - 1 == all.count)
        Self.expectCleanLog(result.daemonLogs[0])
        #expect(elapsed < .seconds(60))
    }
}
