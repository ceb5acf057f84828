import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// vhost-user-blk as a process in its default sandbox, driven by the fake front-end through every
/// request type and every I/O path: each system call they need must be on its allow-list, or the
/// daemon dies with SIGSYS and the requests fail.
@Suite("vhost-user-blk in its sandbox")
struct SandboxedBlockTests {
    @Test("every request type succeeds under the filter", arguments: [
        ["--engine", "io_uring"], ["--engine", "threads"], ["--engine", "inline"],
        ["--direct"], ["--direct", "--engine", "threads"], ["--write-cache", "writethrough", "--engine", "threads"],
        ["--write-cache", "writethrough"],
    ])
    func everyRequestType(options: [String]) throws {
        let tmp = try TemporaryDirectory()
        let image = "\(tmp.path)/disk.img"
        #expect(FileManager.default.createFile(atPath: image, contents: nil) && truncate(image, 4 << 20) == 0)
        let daemon = try BlockDaemon(disk: image, options: options, in: tmp)
        defer { daemon.process.stop() }
        try daemon.exerciseEveryRequest()
        // A grown image reaches the front-end: SIGHUP, then the size check (newfstatat), then a
        // config change message on the back-end channel.
        #expect(truncate(image, 5 << 20) == 0)
        daemon.process.send(SIGHUP)
        try daemon.process.waitForStandardError(containing: "disk size is now \(5 << 20) bytes")
        #expect(daemon.process.waitForExit(timeout: .milliseconds(100)) == nil, "\(daemon.process.diagnostics)")
    }

    @Test("a host block device (a loop device): size, DISCARD and WRITE_ZEROES through its ioctls",
          .enabled(if: LoopDevice.usable, "needs root and losetup"))
    func blockDevice() throws {
        let tmp = try TemporaryDirectory()
        let backing = "\(tmp.path)/backing.img"
        #expect(FileManager.default.createFile(atPath: backing, contents: nil) && truncate(backing, 4 << 20) == 0)
        let loop = try LoopDevice(backing: backing)
        defer { loop.detach() }
        let daemon = try BlockDaemon(disk: loop.path, options: [], in: tmp)
        defer { daemon.process.stop() }
        try daemon.exerciseEveryRequest()
        // The new size comes from BLKGETSIZE64.
        #expect(truncate(backing, 5 << 20) == 0)
        try loop.refreshCapacity()
        daemon.process.send(SIGHUP)
        try daemon.process.waitForStandardError(containing: "disk size is now \(5 << 20) bytes")
        #expect(daemon.process.waitForExit(timeout: .milliseconds(100)) == nil, "\(daemon.process.diagnostics)")
    }
}

/// A vhost-user-blk process set up through the fake front-end, with one queue.
private struct BlockDaemon {
    let process: DaemonProcess
    let connection: ConnectedFrontend
    var memory: FakeGuestMemory { connection.memory }

    init(disk: String, options: [String], in tmp: TemporaryDirectory) throws {
        let socket = "\(tmp.path)/blk.sock"
        process = try DaemonProcess(product: "vhost-user-blk", ["--socket-path", socket, "--blk-file", disk, "--serial", "sandboxed"] + options)
        try process.waitForStandardError(containing: "listening on \(socket)")
        connection = try ConnectedFrontend(socketPath: socket, queueSizes: [64])
    }

    /// Writes through page-aligned and unaligned buffers (the bounce path under O_DIRECT), reads back,
    /// flushes, zeroes with and without unmap, discards, and asks for the serial.
    func exerciseEveryRequest() throws {
        let data = (0..<32768).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        #expect(try write(sector: 64, data, alignment: 4096) == 0)
        #expect(try write(sector: 192, data, alignment: 64) == 0)
        #expect(try read(sector: 64, count: data.count, alignment: 4096) == (0, data))
        #expect(try read(sector: 192, count: data.count, alignment: 64) == (0, data))
        #expect(try request(type: 4) == 0, "FLUSH")
        #expect(try request(type: 13, range: (64, 16, 0)) == 0, "WRITE_ZEROES")
        #expect(try request(type: 13, range: (80, 16, 1)) == 0, "WRITE_ZEROES with UNMAP")
        #expect(try request(type: 11, range: (192, 64, 0)) == 0, "DISCARD")
        #expect(try read(sector: 64, count: 16384, alignment: 4096) == (0, [UInt8](repeating: 0, count: 16384)))
        #expect(try read(sector: 96, count: 1024, alignment: 4096) == (0, Array(data[16384..<17408])), "zeroed too much")
        let id = memory.allocate(20)
        #expect(try request(type: 8, writable: (id, 20)) == 0, "GET_ID")
        #expect(memory.read(id, count: 9) == Array("sandboxed".utf8))
    }

    /// A request: header, an optional readable range segment (sector, sectors, flags) or writable
    /// buffer, and the status byte, which is returned.
    private func request(type: UInt32, sector: UInt64 = 0, readable: (UInt64, Int)? = nil, range: (UInt64, UInt32, UInt32)? = nil,
                         writable: (UInt64, Int)? = nil) throws -> UInt8 {
        var header = ByteWriter()
        header.u32(type); header.u32(0); header.u64(sector)
        let h = memory.allocate(16)
        memory.write(header.bytes, at: h)
        var buffers: [BufferSpec] = [.readable(h, 16)]
        if let readable { buffers.append(.readable(readable.0, readable.1)) }
        if let range {
            var segment = ByteWriter()
            segment.u64(range.0); segment.u32(range.1); segment.u32(range.2)
            let r = memory.allocate(16)
            memory.write(segment.bytes, at: r)
            buffers.append(.readable(r, 16))
        }
        if let writable { buffers.append(.writable(writable.0, writable.1)) }
        let status = memory.allocate(1)
        memory.write([0xff], at: status)
        buffers.append(.writable(status, 1))
        connection.queue.submit(buffers)
        connection.queue.notifyDevice()
        do {
            _ = try connection.queue.waitForUsed(1)
        } catch {
            let exit = process.waitForExit(timeout: .zero).map { "exited with status \($0)" } ?? "still runs"
            throw DaemonTestError("request type \(type): \(error); the daemon \(exit) (\(128 + SIGSYS): SIGSYS)\n\(process.diagnostics)")
        }
        return memory.read(status, count: 1)[0]
    }

    private func write(sector: UInt64, _ bytes: [UInt8], alignment: Int) throws -> UInt8 {
        let buffer = memory.allocate(bytes.count, alignment: alignment)
        memory.write(bytes, at: buffer)
        return try request(type: 1, sector: sector, readable: (buffer, bytes.count))
    }

    private func read(sector: UInt64, count: Int, alignment: Int) throws -> (UInt8, [UInt8]) {
        let buffer = memory.allocate(count, alignment: alignment)
        let status = try request(type: 0, sector: sector, writable: (buffer, count))
        return (status, memory.read(buffer, count: count))
    }
}

/// A loop device over a file, through losetup.
private struct LoopDevice {
    let path: String

    /// Root, and losetup can attach a device here.
    static let usable: Bool = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/losetup")
        && FileManager.default.fileExists(atPath: "/dev/loop-control")

    init(backing: String) throws {
        path = try Self.losetup(["--find", "--show", backing]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard path.hasPrefix("/dev/loop") else { throw DaemonTestError("losetup printed \(path)") }
    }

    /// Makes the device take its backing file's new size.
    func refreshCapacity() throws { _ = try Self.losetup(["--set-capacity", path]) }

    func detach() { _ = try? Self.losetup(["--detach", path]) }

    private static func losetup(_ arguments: [String]) throws -> String {
        let process = try DaemonProcess(command: ["/usr/sbin/losetup"] + arguments)
        guard process.waitForExit(timeout: .seconds(10)) == 0 else { throw DaemonTestError("losetup \(arguments): \(process.diagnostics)") }
        return process.standardOutput
    }
}
