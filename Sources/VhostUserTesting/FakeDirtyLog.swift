import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The front-end's side of a live migration's dirty log: a memfd bitmap with one bit per 4 KiB page of
/// guest physical address space, shared with SET_LOG_BASE, read and cleared as QEMU's migration does.
public final class FakeDirtyLog {
    public let file: OwnedDescriptor
    /// The bitmap's size in bytes (what SET_LOG_BASE announces).
    public let size: Int
    /// Where the bitmap starts in the file (SET_LOG_BASE's offset).
    public let offset: Int
    private let base: UnsafeMutableRawPointer

    /// A log covering guest physical addresses below `coveringBytes`, `offset` bytes into its file.
    public init(coveringBytes: UInt64, offset: Int = 0) throws {
        size = Int((coveringBytes / DirtyLog.pageSize + 7) / 8)
        self.offset = offset
        let fd = vhu_memfd_create("fake-dirty-log", 0)
        guard fd >= 0 else { throw FakeFrontendError.system("memfd_create", errno) }
        file = OwnedDescriptor(fd)
        guard ftruncate(fd, off_t(size + offset)) == 0 else { throw FakeFrontendError.system("ftruncate", errno) }
        guard let p = mmap(nil, size + offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw FakeFrontendError.system("mmap", errno)
        }
        base = p
    }

    deinit { munmap(base, size + offset) }

    public var description: LogDescription { LogDescription(mmapSize: UInt64(size), mmapOffset: UInt64(offset)) }

    /// The guest page numbers (address / 4096) whose bits are set, ascending; clears them, as a
    /// migration's sync does.
    public func takeDirtyPages() -> [UInt64] {
        var pages: [UInt64] = []
        for i in 0..<size {
            let byte = base + offset + i
            let bits = byte.load(as: UInt8.self)
            guard bits != 0 else { continue }
            byte.storeBytes(of: 0, as: UInt8.self)
            for bit in 0..<8 where bits & (1 << bit) != 0 { pages.append(UInt64(i * 8 + bit)) }
        }
        return pages
    }

    /// The bytes before the bitmap in the file (they must stay untouched).
    public var leadingBytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: offset)) }
}

/// The page numbers `length` bytes at guest address `address` touch.
public func guestPages(_ address: UInt64, _ length: Int) -> [UInt64] {
    Array((address / DirtyLog.pageSize)...((address + UInt64(length) - 1) / DirtyLog.pageSize))
}
