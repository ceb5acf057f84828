/// Why a memory region or table was refused. The session answers the request that brought it with a
/// failure and goes on: nothing was mapped or changed.
public enum MemoryError: Error, Equatable, CustomStringConvertible {
    /// A table of more than `GuestMemory.maxSlots` regions.
    case tooManyRegions(Int)
    /// Two regions share guest physical addresses.
    case overlappingRegions(UInt64, UInt64)
    /// No region matches the one to remove.
    case noSuchRegion(guestPhysicalAddress: UInt64, size: UInt64)
    case emptyRegion
    /// The region's end does not fit in 64 bits (as a guest, front-end or file address).
    case overflowingRegion(guestPhysicalAddress: UInt64, size: UInt64)
    /// The descriptor cannot be inspected (fstat failed).
    case unusableFile(SystemError)
    /// The region reaches beyond the end of its file.
    case fileTooSmall(needed: UInt64, fileSize: Int64)
    case mappingFailed(SystemError)

    public var description: String {
        switch self {
        case let .tooManyRegions(count): "\(count) memory regions, more than \(GuestMemory.maxSlots)"
        case let .overlappingRegions(a, b): "memory regions at gpa 0x\(hex(a)) and 0x\(hex(b)) overlap"
        case let .noSuchRegion(gpa, size): "no region at gpa 0x\(hex(gpa)) of size 0x\(hex(size))"
        case .emptyRegion: "memory region of size 0"
        case let .overflowingRegion(gpa, size): "memory region gpa 0x\(hex(gpa)) size 0x\(hex(size)) overflows"
        case let .unusableFile(error): "memory region fd is not usable (\(error))"
        case let .fileTooSmall(needed, fileSize): "memory region needs \(needed) bytes but its file has \(fileSize)"
        case let .mappingFailed(error): error.description
        }
    }
}

private func hex(_ value: UInt64) -> String { String(value, radix: 16) }
