import CFuzzShim
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM for the ring fuzzers: one memfd, mapped once by the harness (to write rings and read
/// results independently of the kit) and shared with the kit as one of a few region layouts, each a
/// `GuestMemory` the kit maps itself. Made once per process; inputs only rewrite its bytes.
public final class FuzzGuestMemory: @unchecked Sendable {
    public static let fileSize = 1 << 20
    public static let guestBase: UInt64 = 0x1_0000_0000
    public static let userOffset: UInt64 = 0x7f00_0000_0000

    public let file: Int32
    /// The harness's own view of the whole file.
    public let base: UnsafeMutableRawPointer
    public let layouts: [GuestLayout]

    /// Zeroes all of guest memory, so that no input sees what an earlier one left (a crash must
    /// reproduce from its input alone). A plain memset: cheaper than punching a hole, which every
    /// mapping of the file would then fault in again.
    public func reset() {
        memset(base, 0, Self.fileSize)
    }

    public init() {
        let file = anonymousFile("fuzz-guest-ram", size: Self.fileSize)
        self.file = file
        let p = mapShared(file, Self.fileSize)
        base = p
        let g = Self.guestBase, k = UInt64(256 << 10)
        let shapes: [[(gpa: UInt64, size: UInt64, offset: UInt64)]] = [
            // One region.
            [(g, 2 * k, 0)],
            // Two regions with a 64 KiB hole between them; the second maps from half-way into the file.
            [(g, k, 0), (g + k + (64 << 10), k, 2 * k)],
            // Two adjacent regions whose file pieces are swapped: a buffer across the boundary is two
            // host segments far apart.
            [(g, k, k), (g + k, k, 0)],
        ]
        layouts = shapes.map { regions in
            GuestLayout(file: file, harnessBase: p, regions: regions.map {
                MemoryRegionDescription(guestPhysicalAddress: $0.gpa, size: $0.size, userAddress: $0.gpa + Self.userOffset, mmapOffset: $0.offset)
            })
        }
    }
}

/// One way of sharing the fuzz guest memory with the kit: its regions, the kit's `GuestMemory` over
/// them, and translations the harness does on its own (guest address to harness pointer, kit host
/// pointer back to guest address) to check the kit's.
public final class GuestLayout: @unchecked Sendable {
    public let regions: [MemoryRegionDescription]
    public let memory: GuestMemory
    private let harnessBase: UnsafeMutableRawPointer

    init(file: Int32, harnessBase: UnsafeMutableRawPointer, regions: [MemoryRegionDescription]) {
        self.regions = regions
        self.harnessBase = harnessBase
        do {
            let mapped = try regions.map { r throws(MemoryError) in
                try MappedRegion(r, file: OwnedDescriptor(dup(file)))
            }
            memory = try GuestMemory(regions: mapped)
        } catch {
            fatalError("cannot map the fuzz guest memory: \(error)")
        }
        // The kit maps each region from the page that holds mmapOffset: the bytes of that page before
        // mmapOffset are not guest memory, so any access there is a translation bug. The layouts live
        // until the process ends, so the poison never outlives the mapping.
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        for region in memory.regions where Int(region.description.mmapOffset) % pageSize > 0 {
            let lead = Int(region.description.mmapOffset) % pageSize
            __asan_poison_memory_region(region.host - lead, lead)
        }
    }

    /// The harness's pointer to `length` bytes at guest address `gpa`, when they lie in one region.
    public func pointer(_ gpa: UInt64, _ length: Int = 1) -> UnsafeMutableRawPointer? {
        for r in regions where gpa >= r.guestPhysicalAddress && gpa &+ UInt64(length) <= r.guestPhysicalAddress + r.size
            && gpa &+ UInt64(length) >= gpa {
            return harnessBase + Int(r.mmapOffset + (gpa - r.guestPhysicalAddress))
        }
        return nil
    }

    /// The guest address of a host pointer the kit handed out, and the bytes left in its region from
    /// there; nil when the pointer is not inside any region's guest memory.
    public func guestAddress(ofKitPointer p: UnsafeRawPointer) -> (gpa: UInt64, left: Int)? {
        for r in memory.regions {
            let start = UnsafeRawPointer(r.host)
            if p >= start && p < start + Int(r.size) {
                return (r.guestPhysicalAddress + UInt64(p - start), Int(r.size) - (p - start))
            }
        }
        return nil
    }

    /// The front-end virtual address of guest address `gpa` (what vring addresses use).
    public func userAddress(_ gpa: UInt64) -> UInt64 { gpa &+ FuzzGuestMemory.userOffset }

    /// Zeroes `length` bytes at `gpa` (clamped to the region).
    public func zero(_ gpa: UInt64, _ length: Int) {
        pointer(gpa, length)?.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }
}

/// An anonymous file of `size` bytes (memfd), e.g. a disk image that lives only in this process.
public func anonymousFile(_ name: String, size: Int) -> Int32 {
    let fd = fuzz_memfd(name, size)
    guard fd >= 0 else { fatalError("memfd_create: errno \(errno)") }
    return fd
}

/// Zeroes the first `size` bytes of an anonymous file.
public func zeroFile(_ fd: Int32, size: Int) {
    guard fuzz_zero_file(fd, size) == 0 else { fatalError("cannot zero a file (errno \(errno))") }
}

/// Maps `size` bytes of `fd` shared, read and write, for the harness's own accesses.
public func mapShared(_ fd: Int32, _ size: Int) -> UnsafeMutableRawPointer {
    guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
        fatalError("mmap: errno \(errno)")
    }
    return p
}
