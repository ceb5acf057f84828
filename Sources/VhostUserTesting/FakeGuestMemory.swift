import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM as a VMM owns it: one memfd, shared with the back-end as one or more regions, each with a
/// guest physical address and a (different) front-end virtual address, as QEMU does.
public final class FakeGuestMemory {
    public let file: OwnedDescriptor
    public let size: Int
    public let base: UnsafeMutableRawPointer
    /// The regions as the back-end sees them.
    public let regions: [MemoryRegionDescription]
    private var nextFree: [UInt64]

    /// `size` bytes of guest memory split into `regionCount` equal regions, placed at guest address
    /// `guestBase`; region front-end addresses are the guest address plus `userOffset` (0 makes them
    /// equal, as libblkio does).
    public init(size: Int = 4 << 20, regionCount: Int = 1, guestBase: UInt64 = 0x1_0000_0000,
                userOffset: UInt64 = 0x7f00_0000_0000) throws {
        precondition(regionCount >= 1 && size % (regionCount * 4096) == 0)
        let fd = vhu_memfd_create("fake-guest-ram", 0)
        guard fd >= 0 else { throw FakeFrontendError.system("memfd_create", errno) }
        file = OwnedDescriptor(fd)
        guard ftruncate(fd, off_t(size)) == 0 else { throw FakeFrontendError.system("ftruncate", errno) }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw FakeFrontendError.system("mmap", errno)
        }
        self.size = size
        base = p
        let regionSize = UInt64(size / regionCount)
        regions = (0..<regionCount).map { i in
            let offset = UInt64(i) * regionSize
            return MemoryRegionDescription(guestPhysicalAddress: guestBase + offset, size: regionSize,
                                           userAddress: guestBase + offset + userOffset, mmapOffset: offset)
        }
        nextFree = regions.map(\.guestPhysicalAddress)
    }

    deinit { munmap(base, size) }

    /// Reserves `bytes` in region `region` (default: the last one, where data buffers go; rings go in
    /// region 0) and returns its guest physical address. The memory is zeroed.
    public func allocate(_ bytes: Int, alignment: Int = 64, region: Int? = nil) -> UInt64 {
        let r = region ?? regions.count - 1
        let start = (nextFree[r] + UInt64(alignment - 1)) & ~UInt64(alignment - 1)
        precondition(start + UInt64(bytes) <= regions[r].guestPhysicalAddress + regions[r].size, "fake guest memory exhausted")
        nextFree[r] = start + UInt64(bytes)
        pointer(start).initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return start
    }

    /// The front-end's own pointer to guest address `gpa`.
    public func pointer(_ gpa: UInt64) -> UnsafeMutableRawPointer {
        let first = regions[0].guestPhysicalAddress
        precondition(gpa >= first && gpa < first + UInt64(size), "gpa 0x\(String(gpa, radix: 16)) is outside fake guest memory")
        return base + Int(gpa - first)
    }

    /// The front-end virtual address of guest address `gpa` (what vring addresses use).
    public func userAddress(_ gpa: UInt64) -> UInt64 {
        let r = regions.first { gpa >= $0.guestPhysicalAddress && gpa < $0.guestPhysicalAddress + $0.size }!
        return r.userAddress + (gpa - r.guestPhysicalAddress)
    }

    public func write(_ bytes: [UInt8], at gpa: UInt64) {
        bytes.withUnsafeBytes { pointer(gpa).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public func read(_ gpa: UInt64, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: pointer(gpa), count: count))
    }
}

public enum FakeFrontendError: Error, CustomStringConvertible, Equatable {
    case system(String, Int32)
    case timeout(String)
    case unexpectedReply(String)

    public var description: String {
        switch self {
        case let .system(call, e): SystemError(call, errno: e).description
        case let .timeout(what): "timed out waiting for \(what)"
        case let .unexpectedReply(what): "unexpected reply: \(what)"
        }
    }
}
