#if canImport(Glibc)
import Glibc
#endif

/// One region of guest memory, mapped from the descriptor the front-end sent. Unmapped when the last
/// memory table that holds it goes away (after every queue worker that used it has stopped).
public final class MappedRegion: @unchecked Sendable {
    public let description: MemoryRegionDescription
    /// Host address of guest physical address `description.guestPhysicalAddress`.
    public let host: UnsafeMutableRawPointer
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int
    /// Kept open for the region's lifetime (some frontends match regions by file on removal).
    public let file: OwnedDescriptor

    public var guestPhysicalAddress: UInt64 { description.guestPhysicalAddress }
    public var size: UInt64 { description.size }
    public var userAddress: UInt64 { description.userAddress }

    /// Maps `description` from `file`. Refuses sizes that overflow and files too small to back the region
    /// (touching a mapping past the end of its file would raise SIGBUS in the daemon).
    public init(_ description: MemoryRegionDescription, file: OwnedDescriptor, request: FrontendRequest) throws(VhostUserError) {
        let d = description
        guard d.size > 0 else { throw .invalidRequest(request, "memory region of size 0") }
        let (gpaEnd, o1) = d.guestPhysicalAddress.addingReportingOverflow(d.size)
        let (_, o2) = d.userAddress.addingReportingOverflow(d.size)
        let (length, o3) = d.size.addingReportingOverflow(d.mmapOffset)
        guard !o1, !o2, !o3, gpaEnd > 0, length <= UInt64(Int.max) else {
            throw .invalidRequest(request, "memory region gpa 0x\(String(d.guestPhysicalAddress, radix: 16)) size 0x\(String(d.size, radix: 16)) overflows")
        }
        var st = stat()
        guard fstat(file.rawValue, &st) == 0 else { throw .invalidRequest(request, "memory region fd is not usable (errno \(errno))") }
        if (st.st_mode & S_IFMT) == S_IFREG, UInt64(st.st_size) < length {
            throw .invalidRequest(request, "memory region needs \(length) bytes but its file has \(st.st_size)")
        }
        guard let p = mmap(nil, Int(length), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, file.rawValue, 0),
              p != MAP_FAILED else {
            throw .invalidRequest(request, "mmap of \(length) bytes failed (errno \(errno))")
        }
        self.description = d
        self.file = file
        mapping = p
        mappingLength = Int(length)
        host = p + Int(d.mmapOffset)
    }

    deinit { munmap(mapping, mappingLength) }
}
