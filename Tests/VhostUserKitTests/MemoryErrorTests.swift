import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The memory layer refuses bad regions and tables with its own typed errors, before anything is mapped.
extension KitTests {
@Suite("memory errors")
struct MemoryErrorTests {
    let page: UInt64 = 4096

    /// A memfd of `pages` pages.
    func file(pages: Int) throws -> OwnedDescriptor {
        let fd = OwnedDescriptor(vhu_memfd_create("memory-error-test", 0))
        guard fd.rawValue >= 0, ftruncate(fd.rawValue, off_t(pages * 4096)) == 0 else { throw SystemError("memfd", errno: errno) }
        return fd
    }

    func region(gpa: UInt64, size: UInt64, offset: UInt64 = 0) -> MemoryRegionDescription {
        MemoryRegionDescription(guestPhysicalAddress: gpa, size: size, userAddress: 0x7000_0000 &+ gpa, mmapOffset: offset)
    }

    @Test("a region of size 0, one that wraps, or one beyond its file is refused with its reason")
    func badRegions() throws {
        let f = try file(pages: 1)
        #expect(throws: MemoryError.emptyRegion) { try MappedRegion(region(gpa: 0, size: 0), file: f) }
        #expect(throws: MemoryError.overflowingRegion(guestPhysicalAddress: UInt64.max - 4095, size: 2 * page)) {
            try MappedRegion(region(gpa: UInt64.max - 4095, size: 2 * page), file: f)
        }
        #expect(throws: MemoryError.fileTooSmall(needed: 2 * page, fileSize: 4096)) {
            try MappedRegion(region(gpa: 0, size: page, offset: page), file: f)
        }
        #expect(MemoryError.fileTooSmall(needed: 8192, fileSize: 4096).description == "memory region needs 8192 bytes but its file has 4096")
    }

    @Test("an fd that cannot be inspected or mapped is refused with the failed call and its errno")
    func unmappableFile() throws {
        #expect(throws: MemoryError.unusableFile(SystemError("fstat", errno: EBADF))) {
            try MappedRegion(region(gpa: 0, size: page), file: OwnedDescriptor(-1))
        }
        let event = try EventFD()
        #expect(throws: MemoryError.mappingFailed(SystemError("mmap of 4096 bytes at file offset 0", errno: ENODEV))) {
            try MappedRegion(region(gpa: 0, size: page), file: event.descriptor)
        }
        #expect(MemoryError.mappingFailed(SystemError("mmap of 4096 bytes at file offset 0", errno: ENODEV)).description
                == "mmap of 4096 bytes at file offset 0: No such device")
    }

    @Test("a table refuses overlapping regions and more than 32; removing an unknown region is refused")
    func tables() throws {
        let f = try file(pages: 40)
        let a = try MappedRegion(region(gpa: 0x1_0000_0000, size: 2 * page), file: f)
        let b = try MappedRegion(region(gpa: 0x1_0000_1000, size: page, offset: 2 * page), file: f)
        #expect(throws: MemoryError.overlappingRegions(0x1_0000_0000, 0x1_0000_1000)) { try GuestMemory(regions: [b, a]) }
        let memory = try GuestMemory(regions: [a])
        #expect(throws: MemoryError.overlappingRegions(0x1_0000_0000, 0x1_0000_1000)) { try memory.adding(b) }
        #expect(throws: MemoryError.noSuchRegion(guestPhysicalAddress: 0x1_0000_1000, size: page)) { try memory.removing(b.description) }
        #expect(try memory.removing(a.description).isEmpty)

        let many = try (0..<33).map { i in try MappedRegion(region(gpa: UInt64(i) * page, size: page, offset: UInt64(i) * page), file: f) }
        #expect(throws: MemoryError.tooManyRegions(33)) { try GuestMemory(regions: many) }
        #expect(try GuestMemory(regions: Array(many.prefix(32))).regions.count == 32)
    }
}
}
