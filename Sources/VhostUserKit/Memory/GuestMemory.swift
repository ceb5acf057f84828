/// An immutable memory table: the regions the front-end shared, sorted by guest physical address.
/// Queue workers hold one table for as long as they run; a new table means stopped and restarted
/// workers, so no worker ever sees a region disappear under it.
///
/// Every translation is bounds-checked: a range is only translated when it lies wholly inside
/// mapped regions, so a guest cannot make the daemon touch memory outside them.
///
/// Sendable by hand (@unchecked): immutable after init, and `table` is a private copy only ever read.
public final class GuestMemory: @unchecked Sendable {
    /// The most regions a table may hold (GET_MAX_MEM_SLOTS).
    public static let maxSlots = 32

    public let regions: [MappedRegion]
    /// A flat copy of the ranges for the hot path: no ARC traffic while translating.
    private let table: UnsafeMutableBufferPointer<Entry>

    struct Entry {
        var guestStart: UInt64
        var guestEnd: UInt64
        var userStart: UInt64
        var userEnd: UInt64
        var host: UnsafeMutableRawPointer
    }

    public static let empty = GuestMemory(checked: [])

    private init(checked regions: [MappedRegion]) {
        self.regions = regions
        table = .allocate(capacity: max(1, regions.count))
        for (i, r) in regions.enumerated() {
            table[i] = Entry(guestStart: r.guestPhysicalAddress, guestEnd: r.guestPhysicalAddress + r.size,
                             userStart: r.userAddress, userEnd: r.userAddress + r.size, host: r.host)
        }
    }

    deinit { table.deallocate() }

    /// Builds a table, refusing more than `maxSlots` regions and regions whose guest ranges overlap.
    public convenience init(regions: [MappedRegion]) throws(MemoryError) {
        guard regions.count <= Self.maxSlots else { throw .tooManyRegions(regions.count) }
        let sorted = regions.sorted { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.guestPhysicalAddress + a.size > b.guestPhysicalAddress {
            throw .overlappingRegions(a.guestPhysicalAddress, b.guestPhysicalAddress)
        }
        self.init(checked: sorted)
    }

    /// A new table with `region` added.
    public func adding(_ region: MappedRegion) throws(MemoryError) -> GuestMemory {
        try GuestMemory(regions: regions + [region])
    }

    /// A new table without the region matching `description` (guest address, size and user address).
    public func removing(_ description: MemoryRegionDescription) throws(MemoryError) -> GuestMemory {
        guard let i = regions.firstIndex(where: {
            $0.guestPhysicalAddress == description.guestPhysicalAddress && $0.size == description.size
                && $0.userAddress == description.userAddress
        }) else {
            throw .noSuchRegion(guestPhysicalAddress: description.guestPhysicalAddress, size: description.size)
        }
        var rest = regions
        rest.remove(at: i)
        return GuestMemory(checked: rest)
    }

    public var isEmpty: Bool { regions.isEmpty }

    /// Whether the front-end shrank the file under any region and an access hit a lost page.
    public var faulted: Bool { regions.contains { $0.faulted } }

    /// Host address of `length` bytes at guest physical address `address`, when they lie in one region.
    @inline(__always)
    public func contiguous(guest address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        let (end, overflow) = address.addingReportingOverflow(UInt64(length))
        guard !overflow else { return nil }
        for i in 0..<regions.count {
            let e = table[i]
            if address >= e.guestStart && end <= e.guestEnd { return e.host + Int(address - e.guestStart) }
        }
        return nil
    }

    /// Host address of `length` bytes at front-end virtual address `address` (vring addresses).
    public func contiguous(user address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        let (end, overflow) = address.addingReportingOverflow(UInt64(length))
        guard !overflow else { return nil }
        for i in 0..<regions.count {
            let e = table[i]
            if address >= e.userStart && end <= e.userEnd {
                return e.host + Int(address - e.userStart)
            }
        }
        return nil
    }

    /// Translates a guest range that may span adjacent regions into host segments, calling `body` for
    /// each piece in order. Returns false (having called `body` for a prefix at most) when any byte of the
    /// range is outside the mapped regions.
    @inline(__always)
    public func forEachSegment(guest address: UInt64, length: UInt32, _ body: (UnsafeMutableRawPointer, Int) -> Bool) -> Bool {
        var address = address
        var remaining = UInt64(length)
        guard !address.addingReportingOverflow(remaining).overflow else { return false }
        while remaining > 0 {
            var found = false
            for i in 0..<regions.count {
                let e = table[i]
                if address >= e.guestStart && address < e.guestEnd {
                    let n = min(remaining, e.guestEnd - address)
                    guard body(e.host + Int(address - e.guestStart), Int(n)) else { return false }
                    address += n
                    remaining -= n
                    found = true
                    break
                }
            }
            if !found { return false }
        }
        return true
    }
}
