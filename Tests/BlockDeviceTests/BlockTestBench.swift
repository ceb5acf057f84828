import BlockDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A vhost-user-blk device on a temporary image file (or the null target), served in-process and set up
/// through the fake front-end, with helpers to build virtio-blk requests in guest memory.
final class BlockTestBench {
    let image: String?
    let fixture: DeviceFixture<BlockDevice>
    var device: BlockDevice { fixture.device }
    var daemon: InProcessDaemon { fixture.daemon }
    var memory: FakeGuestMemory { fixture.memory }
    var queue: FakeQueue { fixture.queue }

    init(sizeBytes: Int = 1 << 20, target: String = "file", readOnly: Bool = false, direct: Bool = false, logicalBlockSize: Int = 512,
         engine: IOEngineKind = .ioUring, queues: Int = 1, workers: Int? = nil, serial: String = "disk-0123", profile: FrontendProfile = .qemu,
         maskFeatures: UInt64 = 0, memorySize: Int = 8 << 20, network: BlockTarget? = nil) throws {
        var path: String?
        let backendTarget: BlockTarget
        if let network {
            backendTarget = network  // an RBD image or NBD export the caller made
        } else if target == "null" {
            backendTarget = .null(size: UInt64(sizeBytes))
        } else if target.hasPrefix("/dev/") {
            backendTarget = .file(target)  // a host block device the caller made and removes
        } else {
            let p = "/tmp/vhu-blk-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
            let fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0o600)
            ftruncate(fd, off_t(sizeBytes))
            close(fd)
            path = p
            backendTarget = .file(p)
        }
        image = path
        var options = BlockDevice.Options()
        options.serial = serial
        options.queueCount = queues
        options.workers = workers
        options.engine = engine
        let device = try BlockDevice(backend: BlockBackend(target: backendTarget, readOnly: readOnly, direct: direct, logicalBlockSize: logicalBlockSize), options: options)
        fixture = try DeviceFixture(device, profile: profile, queueSizes: Array(repeating: 128, count: queues),
                                    memorySize: memorySize, regionCount: 2, maskFeatures: maskFeatures)
    }

    deinit {
        daemon.stop()
        if let image { unlink(image) }
    }

    /// A request header in guest memory.
    func header(_ type: UInt32, sector: UInt64 = 0) -> UInt64 {
        let a = memory.allocate(16)
        var w = ByteWriter()
        w.u32(type); w.u32(0); w.u64(sector)
        memory.write(w.bytes, at: a)
        return a
    }

    /// DISCARD / WRITE_ZEROES ranges in guest memory.
    func ranges(_ list: [(sector: UInt64, sectors: UInt32, flags: UInt32)]) -> (UInt64, Int) {
        let a = memory.allocate(16 * list.count)
        var w = ByteWriter()
        for r in list { w.u64(r.sector); w.u32(r.sectors); w.u32(r.flags) }
        memory.write(w.bytes, at: a)
        return (a, 16 * list.count)
    }

    /// Submits `buffers` on queue `q`, kicks, and returns the used element and the status byte at `status`.
    func run(_ buffers: [BufferSpec], status: UInt64, on q: Int = 0, indirect: Bool = false) throws -> (UsedElement, UInt8) {
        let fq = fixture.queues[q]
        fq.submit(buffers, indirect: indirect)
        fq.notifyDevice()
        let used = try fq.waitForUsed(1)
        return (used[0], memory.read(status, count: 1)[0])
    }

    /// Reads a request of `length` bytes at `sector`; returns the status and the data.
    func read(sector: UInt64, length: Int, on q: Int = 0) throws -> (UInt8, [UInt8], UInt32) {
        let h = header(0, sector: sector), data = memory.allocate(max(length, 1)), s = memory.allocate(1)
        memory.write([0xff], at: s)
        let (used, status) = try run([.readable(h, 16), .writable(data, length), .writable(s, 1)], status: s, on: q)
        return (status, memory.read(data, count: length), used.length)
    }

    /// Writes `bytes` at `sector`; returns the status.
    func write(sector: UInt64, _ bytes: [UInt8], on q: Int = 0) throws -> UInt8 {
        let (buffers, s) = writeRequest(sector: sector, bytes)
        return try run(buffers, status: s, on: q).1
    }

    /// Puts a write of `bytes` at `sector` on queue `q` without kicking it or waiting; returns the
    /// address of its status byte (0xff until the device answers).
    @discardableResult
    func submitWrite(sector: UInt64, _ bytes: [UInt8], on q: Int = 0) -> UInt64 {
        let (buffers, s) = writeRequest(sector: sector, bytes)
        fixture.queues[q].submit(buffers)
        return s
    }

    /// A write request's buffers in guest memory (header, data, status byte set to 0xff).
    private func writeRequest(sector: UInt64, _ bytes: [UInt8]) -> ([BufferSpec], status: UInt64) {
        let h = header(1, sector: sector), data = memory.allocate(bytes.count), s = memory.allocate(1)
        memory.write(bytes, at: data)
        memory.write([0xff], at: s)
        return ([.readable(h, 16), .readable(data, bytes.count), .writable(s, 1)], s)
    }

    /// The image file's bytes at `offset`.
    func fileBytes(at offset: Int, count: Int) -> [UInt8] {
        let fd = open(image!, O_RDONLY)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        _ = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return out
    }

    func writeFile(_ bytes: [UInt8], at offset: Int) {
        let fd = open(image!, O_WRONLY)
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
    }

    /// Allocated bytes of the image: shows whether a range was deallocated.
    var allocatedBytes: Int { fileAllocatedBytes(image!) }
}

/// Allocated bytes of the file at `path` (st_blocks × 512), or -1 when it cannot be read.
func fileAllocatedBytes(_ path: String) -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { return -1 }
    return Int(st.st_blocks) * 512
}

func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }
