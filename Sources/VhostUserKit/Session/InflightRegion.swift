import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// The shared buffer that records in-flight requests so a restarted back-end can resubmit them
/// (INFLIGHT_SHMFD). Created on GET_INFLIGHT_FD, handed back by the front-end on SET_INFLIGHT_FD after
/// a reconnect. Layout per queue (split rings): a 16-byte header and 16 bytes per descriptor.
public final class InflightRegion {
    public let description: InflightDescription
    public let file: OwnedDescriptor
    public let base: UnsafeMutableRawPointer
    private let memoryGuard: MemoryGuard

    /// Bytes one queue of `queueSize` descriptors takes, rounded to 64 like other implementations.
    public static func queueRegionSize(queueSize: Int) -> Int { (InflightTracker.bytes(queueSize: queueSize) + 63) & ~63 }

    /// Makes a zeroed region for `queueCount` queues of `queueSize` descriptors.
    public static func create(queueCount: Int, queueSize: Int) throws(VhostUserError) -> InflightRegion {
        let size = queueRegionSize(queueSize: queueSize) * queueCount
        let fd = try VhostUserError.fromSystem { () throws(SystemError) in
            let fd = OwnedDescriptor(try systemCall("memfd_create") { vhu_memfd_create("vhost-user-inflight", 0) })
            try systemCall("ftruncate") { ftruncate(fd.rawValue, off_t(size)) }
            return fd
        }
        let d = InflightDescription(mmapSize: UInt64(size), mmapOffset: 0, queueCount: UInt16(queueCount), queueSize: UInt16(truncatingIfNeeded: queueSize))
        return try InflightRegion(d, file: fd)
    }

    /// Maps a region the front-end handed back.
    public init(_ description: InflightDescription, file: OwnedDescriptor) throws(VhostUserError) {
        guard description.mmapSize > 0, description.mmapSize <= 1 << 30,
              description.mmapOffset <= 1 << 30 else {
            throw .invalidRequest(.setInflightFd, "inflight region of \(description.mmapSize) bytes at offset \(description.mmapOffset)")
        }
        var st = stat()
        if fstat(file.rawValue, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG,
           UInt64(st.st_size) < description.mmapSize + description.mmapOffset {
            throw .invalidRequest(.setInflightFd, "inflight file is smaller than the region")
        }
        guard let p = mmap(nil, Int(description.mmapSize), PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, off_t(description.mmapOffset)),
              p != MAP_FAILED else {
            throw .invalidRequest(.setInflightFd, SystemError("mmap of the inflight region", errno: errno).description)
        }
        self.description = description
        self.file = file
        self.base = p
        memoryGuard = MemoryGuard(base: p, length: Int(description.mmapSize))
    }

    /// Whether the front-end shrank the region's file under it and an access touched a lost page.
    public var faulted: Bool { memoryGuard.faulted }

    deinit {
        memoryGuard.release()
        munmap(base, Int(description.mmapSize))
    }
}
