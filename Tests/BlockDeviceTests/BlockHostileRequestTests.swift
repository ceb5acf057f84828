import BlockDevice
import Foundation
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Requests and front-ends built to hurt vhost-user-blk: sizes that overflow 32-bit fields, a back-end
/// channel nobody reads, write zeroes where there is no file to sync.
@Suite("virtio-blk against a hostile guest and front-end")
struct BlockHostileRequestTests {
    @Test("a request whose buffers add up to more than 2 GiB (overlapping) gets IOERR, no trap, and the queue goes on",
          arguments: [0 as UInt32, 1])
    func hugeRequestIsRefused(type: UInt32) throws {
        let bench = try BlockTestBench(sizeBytes: 8 << 30, memorySize: 64 << 20)
        defer { bench.daemon.stop() }
        // 125 buffers over the same 32 MiB of region 1: 4000 MiB of data in one request.
        let data = bench.memory.regions[1].guestPhysicalAddress
        let h = bench.header(type), s = bench.memory.allocate(1, region: 0)
        bench.memory.write([0xff], at: s)
        let chunk = BufferSpec(address: data, length: 32 << 20, writable: type == 0)
        let (used, status) = try bench.run([.readable(h, 16)] + Array(repeating: chunk, count: 125) + [.writable(s, 1)], status: s)
        #expect(status == 1)  // IOERR
        #expect(used.length == 1)
        #expect(try bench.write(sector: 0, pattern(4096, seed: 9)) == 0)
        #expect(bench.fileBytes(at: 0, count: 4096) == pattern(4096, seed: 9))
    }

    @Test("WRITE_ZEROES on the null target in writethrough mode succeeds (no fdatasync of a missing file)")
    func writeZeroesOnNullWritethrough() throws {
        let bench = try BlockTestBench(target: "null", maskFeatures: VirtioBlock.Feature.flush)
        defer { bench.daemon.stop() }
        let h = bench.header(13), (r, n) = bench.ranges([(sector: 0, sectors: 8, flags: 0)]), s = bench.memory.allocate(1)
        let (_, status) = try bench.run([.readable(h, 16), .readable(r, n), .writable(s, 1)], status: s)
        #expect(status == 0)
    }

    /// WRITE_ZEROES with UNMAP must ask a host block device for zeroes (BLKZEROOUT), never for a discard
    /// (BLKDISCARD): a discard does not promise zeroes, and a device that does not zero what it unmaps
    /// would hand the guest its old data. Reading zeroes back cannot tell the two apart on a loop device,
    /// whose discard punches a hole in the backing file, and a hole reads as zeroes. The backing file
    /// can: loop turns a discard into FALLOC_FL_PUNCH_HOLE (the file's blocks are freed) and BLKZEROOUT,
    /// which never unmaps, into FALLOC_FL_ZERO_RANGE, or writes of zeroes where the file system cannot
    /// zero a range (the blocks stay allocated either way). So the backing file must keep every block.
    @Test("WRITE_ZEROES with UNMAP on a host block device (a loop device) asks for zeroes, not a discard: zeroes read back and the backing file keeps its blocks",
          .enabled(if: getuid() == 0 && access("/usr/sbin/losetup", X_OK) == 0 && access("/dev/loop-control", F_OK) == 0))
    func writeZeroesUnmapOnBlockDevice() throws {
        let image = "/tmp/vhu-loop-\(getpid()).img"
        let fd = open(image, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        let data = pattern(1 << 20, seed: 5)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == data.count)
        #expect(fsync(fd) == 0)
        close(fd)
        defer { unlink(image) }
        let allocated = fileAllocatedBytes(image)
        try #require(allocated >= data.count, "the image must be fully allocated for a discard to show")
        let attach = try runCommand(["/usr/sbin/losetup", "--find", "--show", image])
        let loop = attach.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(loop.hasPrefix("/dev/loop"))
        defer { _ = try? runCommand(["/usr/sbin/losetup", "--detach", loop]) }
        let bench = try BlockTestBench(target: loop)
        defer { bench.daemon.stop() }
        let h = bench.header(13), (r, n) = bench.ranges([(sector: 8, sectors: 16, flags: 1)]), s = bench.memory.allocate(1)
        let (_, status) = try bench.run([.readable(h, 16), .readable(r, n), .writable(s, 1)], status: s)
        #expect(status == 0)
        let (readStatus, zeroed, _) = try bench.read(sector: 8, length: 16 * 512)
        #expect(readStatus == 0)
        #expect(zeroed == [UInt8](repeating: 0, count: 16 * 512))
        // The neighbours are untouched.
        let (_, before, _) = try bench.read(sector: 0, length: 8 * 512)
        #expect(before == Array(data[0..<(8 * 512)]))
        let (_, after, _) = try bench.read(sector: 24, length: 512)
        #expect(after == Array(data[(24 * 512)..<(25 * 512)]))
        // A discard would have punched the 8 KiB (two file system blocks) out of the backing file.
        #expect(fileAllocatedBytes(image) >= allocated, "the backing file lost blocks: the daemon discarded instead of zeroing")
    }

    @Test("a front-end that never reads its back-end channel cannot hold the daemon: resize notices give up, stop is prompt")
    func unreadBackendChannel() throws {
        let bench = try BlockTestBench()
        withExtendedLifetime(bench.fixture.backendSocket) {}
        // Grow the image a block at a time; each change sends a config-change message nobody reads,
        // until the socket is full and a send gives up.
        let finished = try EventFD()
        let image = bench.image!
        let device = bench.device
        let notifier = PosixThread {
            for i in 1...600 {
                #expect(truncate(image, off_t((1 << 20) + 512 * i)) == 0)
                device.checkResize()
            }
            finished.signal()
        }
        #expect(finished.wait(timeoutMilliseconds: 20_000))
        let start = monotonicNanoseconds()
        bench.daemon.stop()
        #expect(monotonicNanoseconds() - start < 2_000_000_000)
        notifier.join()
    }
}
/// Polls `condition` every millisecond until it holds or the timeout passes.
func waitUntilTrue(timeoutSeconds: Int, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(timeoutSeconds) * 1_000_000_000
    while !condition() {
        if monotonicNanoseconds() > deadline { return false }
        usleep(1000)
    }
    return true
}

/// Runs a command to completion and returns its standard output; throws when it fails.
func runCommand(_ argv: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: argv[0])
    process.arguments = Array(argv.dropFirst())
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let bytes = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CommandError(command: argv.joined(separator: " ")) }
    return String(decoding: bytes, as: UTF8.self)
}

struct CommandError: Error { let command: String }
