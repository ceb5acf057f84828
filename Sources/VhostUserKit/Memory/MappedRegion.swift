#if canImport(Glibc)
import Glibc
#endif

/// One region of guest memory, mapped from the descriptor the front-end sent. Unmapped when the last
/// memory table that holds it goes away (after every queue worker that used it has stopped).
/// Sendable by hand (@unchecked): immutable, and its pointers name a mapping that lives as long as it does.
public final class MappedRegion: @unchecked Sendable {
    public let description: MemoryRegionDescription
    /// Host address of guest physical address `description.guestPhysicalAddress`.
    public let host: UnsafeMutableRawPointer
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int
    private let memoryGuard: MemoryGuard
    /// Kept open for the region's lifetime (some frontends match regions by file on removal).
    public let file: OwnedDescriptor

    public var guestPhysicalAddress: UInt64 { description.guestPhysicalAddress }
    public var size: UInt64 { description.size }
    public var userAddress: UInt64 { description.userAddress }

    /// Whether the front-end shrank the file under the mapping and an access touched a lost page.
    public var faulted: Bool { memoryGuard.faulted }

    /// Maps `description` from `file`, from the page that holds `mmapOffset` (so the region keeps the
    /// file's own alignment: an offset of 8 gives a host address 8 bytes into a page, never a
    /// misaligned ring at an aligned front-end address). Refuses sizes that overflow and files too small
    /// to back the region. The whole mapping is reserved up front (no MAP_NORESERVE): a hugetlbfs file
    /// without enough free pages fails here, not with SIGBUS on first touch; a file the front-end
    /// shrinks later is caught by the memory guard.
    public init(_ description: MemoryRegionDescription, file: OwnedDescriptor) throws(MemoryError) {
        let d = description
        guard d.size > 0 else { throw .emptyRegion }
        let (gpaEnd, o1) = d.guestPhysicalAddress.addingReportingOverflow(d.size)
        let (_, o2) = d.userAddress.addingReportingOverflow(d.size)
        let (fileEnd, o3) = d.size.addingReportingOverflow(d.mmapOffset)
        guard !o1, !o2, !o3, gpaEnd > 0, fileEnd <= UInt64(Int.max) else {
            throw .overflowingRegion(guestPhysicalAddress: d.guestPhysicalAddress, size: d.size)
        }
        var st = stat()
        guard fstat(file.rawValue, &st) == 0 else { throw .unusableFile(SystemError("fstat", errno: errno)) }
        if (st.st_mode & S_IFMT) == S_IFREG, UInt64(st.st_size) < fileEnd {
            throw .fileTooSmall(needed: fileEnd, fileSize: Int64(st.st_size))
        }
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let start = d.mmapOffset - d.mmapOffset % pageSize
        let lead = Int(d.mmapOffset - start)
        let length = Int(fileEnd - start)
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, off_t(start)),
              p != MAP_FAILED else {
            throw .mappingFailed(SystemError("mmap of \(length) bytes at file offset \(start)", errno: errno))
        }
        self.description = d
        self.file = file
        mapping = p
        mappingLength = length
        host = p + lead
        memoryGuard = MemoryGuard(base: p, length: length)
    }

    deinit {
        memoryGuard.release()
        munmap(mapping, mappingLength)
    }
}
