import CVhostUser
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// What the disk is: a raw image file, a host block device, a network store (a Ceph RBD image, an
/// NBD export), or nothing at all (the null target).
public enum BlockTarget: Sendable, Equatable {
    case file(String)
    /// Reads return zeroes, writes are discarded: the protocol and virtqueue cost alone.
    case null(size: UInt64)
    case rbd(RBDTarget)
    case nbd(NBDTarget)
}

public struct BlockBackendError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The backing store, shared by every queue. Data I/O goes through each queue's IOEngine: on `fd` for
/// a local file, to the network store otherwise (`store`, whose engines do discard and write zeroes
/// too); for a local file this type does what is not plain reads and writes: size, discard, write zeroes.
public final class BlockBackend: Sendable {
    public let target: BlockTarget
    /// -1 for the null target and network stores.
    public let fd: Int32
    /// The RBD image or NBD export; nil for local files and the null target.
    let store: (any NetworkStore)?
    private let file: OwnedDescriptor?
    public let isBlockDevice: Bool
    /// The file lives in memory (tmpfs, ramfs, hugetlbfs): its I/O never waits for a device.
    public let isMemoryBacked: Bool
    public let readOnly: Bool
    public let direct: Bool
    public let logicalBlockSize: Int
    private let size: Atomic<UInt64>

    // BLKGETSIZE64, BLKDISCARD and BLKZEROOUT from <linux/fs.h>.
    public static let BLKGETSIZE64: UInt = 0x8008_1272
    public static let BLKDISCARD: UInt = 0x1277
    public static let BLKZEROOUT: UInt = 0x127f

    public init(target: BlockTarget, readOnly: Bool = false, direct: Bool = false, logicalBlockSize: Int = 512) throws(BlockBackendError) {
        guard logicalBlockSize == 512 || logicalBlockSize == 4096 else {
            throw BlockBackendError("logical block size must be 512 or 4096, not \(logicalBlockSize)")
        }
        self.target = target
        self.direct = direct
        store = try Self.openStore(target, readOnly: readOnly, logicalBlockSize: logicalBlockSize)
        self.readOnly = store?.readOnly ?? readOnly
        self.logicalBlockSize = store?.logicalBlockSize ?? logicalBlockSize
        switch target {
        case .rbd, .nbd:
            file = nil
            fd = -1
            isBlockDevice = false
            isMemoryBacked = false
            self.size = Atomic(0)
            _ = refreshSize()
        case let .null(size):
            file = nil
            fd = -1
            isBlockDevice = false
            isMemoryBacked = true
            self.size = Atomic(size)
        case let .file(path):
            let flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? vhu_o_direct() : 0)
            let fd = open(path, flags)
            guard fd >= 0 else { throw BlockBackendError("cannot open \(path): \(SystemError.describe(errno))") }
            file = OwnedDescriptor(fd)
            self.fd = fd
            var st = stat()
            fstat(fd, &st)
            isBlockDevice = (st.st_mode & S_IFMT) == S_IFBLK
            guard isBlockDevice || (st.st_mode & S_IFMT) == S_IFREG else {
                throw BlockBackendError("\(path) is neither a regular file nor a block device")
            }
            let memoryFileSystems: Set<Int64> = [0x0102_1994 /* tmpfs */, 0x8584_58f6 /* ramfs */, 0x9584_58f6 /* hugetlbfs */]
            isMemoryBacked = !isBlockDevice && memoryFileSystems.contains(vhu_fs_type(fd))
            self.size = Atomic(0)
            _ = refreshSize()
        }
    }

    private static func openStore(_ target: BlockTarget, readOnly: Bool, logicalBlockSize: Int) throws(BlockBackendError) -> (any NetworkStore)? {
        switch target {
        case let .rbd(rbd): try RBDStore(rbd, readOnly: readOnly, logicalBlockSize: logicalBlockSize)
        case let .nbd(nbd): try NBDStore(nbd, readOnly: readOnly, logicalBlockSize: logicalBlockSize)
        case .file, .null: nil
        }
    }

    /// Lets go of a network store (an RBD image's lock) before the process exits; nothing may be in flight.
    public func close() { store?.close() }

    /// Makes every completed write stable (the front-end went away): fdatasync on a file, the network
    /// store's own flush (an RBD image's cache). Returns 0 or an errno value.
    func flushAll() -> Int32 {
        if let store { return store.flushAll() }
        guard fd >= 0 else { return 0 }
        return fdatasync(fd) == 0 ? 0 : errno
    }

    /// The null target: no data anywhere.
    public var isNull: Bool { if case .null = target { true } else { false } }

    /// What FLUSH, DISCARD and WRITE_ZEROES can do on this disk (an NBD server may lack any of them).
    var canFlush: Bool { store?.canFlush ?? !isNull }
    var canDiscard: Bool { store?.canDiscard ?? true }
    var canWriteZeroes: Bool { store?.canWriteZeroes ?? true }

    /// The disk size in bytes, rounded down to whole logical blocks.
    public var sizeBytes: UInt64 { size.load(ordering: .relaxed) }

    /// Re-reads the size of the file or device; returns true when it changed.
    public func refreshSize() -> Bool {
        var bytes: UInt64 = 0
        if let store {
            guard let now = store.currentSize() else { return false }
            bytes = now
        } else if fd < 0 {
            return false
        } else if isBlockDevice {
            _ = vhu_ioctl_ptr(fd, Self.BLKGETSIZE64, &bytes)
        } else {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return false }
            bytes = UInt64(st.st_size)
        }
        bytes -= bytes % UInt64(logicalBlockSize)
        return size.exchange(bytes, ordering: .relaxed) != bytes
    }

    /// Deallocates a byte range (DISCARD). Returns 0 or an errno value.
    func discard(offset: UInt64, length: UInt64) -> Int32 {
        guard fd >= 0 else { return 0 }
        if isBlockDevice {
            var range: (UInt64, UInt64) = (offset, length)
            return vhu_ioctl_ptr(fd, Self.BLKDISCARD, &range) == 0 ? 0 : errno
        }
        return vhu_fallocate(fd, 0, offset, length)
    }

    /// Zeroes a byte range (WRITE_ZEROES); with `unmap`, the blocks may be deallocated too, but they
    /// must read back as zeroes either way. Returns 0 or an errno value.
    func writeZeroes(offset: UInt64, length: UInt64, unmap: Bool) -> Int32 {
        guard fd >= 0 else { return 0 }
        if isBlockDevice {
            // BLKDISCARD does not promise zeroes; BLKZEROOUT does, and unmaps where the device can
            // guarantee zeroes for unmapped blocks.
            var range: (UInt64, UInt64) = (offset, length)
            return vhu_ioctl_ptr(fd, Self.BLKZEROOUT, &range) == 0 ? 0 : errno
        }
        let e = vhu_fallocate(fd, unmap ? 0 : 1, offset, length)
        // Some file systems cannot zero a range in place; a punched hole reads as zeroes too.
        guard e == EOPNOTSUPP, !unmap else { return e }
        return vhu_fallocate(fd, 0, offset, length)
    }
}
