import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// The dirty-page log of a live migration (SET_LOG_BASE with LOG_SHMFD): a bitmap the front-end
/// shares, one bit per 4 KiB page of guest physical address space, that the back-end sets for every
/// page it writes while VHOST_F_LOG_ALL is negotiated. The front-end reads and clears bits while
/// queues run, so every bit is set with an atomic OR, after the write it reports.
///
/// Queue workers hold the log they started with; a new log (the front-end resized it) means stopped
/// and restarted workers, like a new memory table, so a mapping is only unmapped once no worker can
/// write it (when the last `Virtqueue` holding it goes).
/// Sendable by hand (@unchecked): immutable after init; the bitmap is only touched with atomics.
public final class DirtyLog: @unchecked Sendable {
    /// The page size the log counts in (vhost-user spec, "Migration": VHOST_LOG_PAGE).
    public static let pageSize: UInt64 = 0x1000
    /// The largest log accepted: one bit per page of 32 TiB of guest physical addresses.
    public static let maximumSize: UInt64 = 1 << 30

    public let description: LogDescription
    /// Kept open for the log's lifetime.
    public let file: OwnedDescriptor
    private let bitmap: UnsafeMutableRawPointer
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int
    private let memoryGuard: MemoryGuard
    /// False only under the test-only switch `VHOST_USER_DEVICES_TEST_IGNORE_DIRTY_BUFFERS`: buffer
    /// writes then go unlogged (the used ring still is), to show what a lost dirty page does to a
    /// migrated guest.
    public let logsBuffers = getenv("VHOST_USER_DEVICES_TEST_IGNORE_DIRTY_BUFFERS") == nil
    /// Pages the bitmap covers: writes beyond it (a front-end that sized the log too small) cannot be
    /// logged.
    private let pageCount: UInt64

    /// Maps `description.mmapSize` bytes of `file` from `description.mmapOffset`, refusing an empty or
    /// oversized log, an offset that overflows and a file too small to back it.
    public init(_ description: LogDescription, file: OwnedDescriptor) throws(VhostUserError) {
        let size = description.mmapSize, offset = description.mmapOffset
        let (end, overflow) = size.addingReportingOverflow(offset)
        guard size > 0, size <= Self.maximumSize, !overflow, end <= UInt64(Int.max) else {
            throw .invalidRequest(.setLogBase, "dirty log of \(size) bytes at file offset \(offset)")
        }
        var st = stat()
        guard fstat(file.rawValue, &st) == 0 else {
            throw .invalidRequest(.setLogBase, SystemError("fstat of the log descriptor", errno: errno).description)
        }
        if (st.st_mode & S_IFMT) == S_IFREG, UInt64(st.st_size) < end {
            throw .invalidRequest(.setLogBase, "the log file has \(st.st_size) bytes; the log needs \(end)")
        }
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset - offset % page
        let length = Int(end - start)
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, off_t(start)), p != MAP_FAILED else {
            throw .invalidRequest(.setLogBase, SystemError("mmap of the \(size)-byte dirty log", errno: errno).description)
        }
        self.description = description
        self.file = file
        mapping = p
        mappingLength = length
        bitmap = p + Int(offset - start)
        pageCount = size * 8
        memoryGuard = MemoryGuard(base: p, length: length)
    }

    deinit {
        memoryGuard.release()
        munmap(mapping, mappingLength)
    }

    /// Marks every page that `length` bytes at guest physical `address` touch: one atomic OR per byte
    /// of the bitmap (eight pages), nothing allocated.
    @inline(__always)
    public func mark(guest address: UInt64, length: UInt64) {
        guard length > 0 else { return }
        let first = address / Self.pageSize
        let (end, overflow) = address.addingReportingOverflow(length - 1)
        var last = (overflow ? UInt64.max : end) / Self.pageSize
        guard first < pageCount else { return }
        if last >= pageCount { last = pageCount - 1 }
        var page = first
        while page <= last {
            let byte = page / 8
            let lastInByte = min(last, byte * 8 + 7)
            let low = Int(page % 8), high = Int(lastInByte % 8)
            let bits = UInt8(truncatingIfNeeded: (0xff << low) & (0xff >> (7 - high)))
            vhu_atomic_or_u8(bitmap + Int(byte), bits)
            page = lastInByte + 1
        }
    }
}
