#if canImport(Glibc)
import Glibc
#endif

/// Why a descriptor chain or a ring was refused. A bad chain is returned to the guest with a length of 0;
/// a bad ring (an index the device cannot trust) stops the queue until the front-end sets it up again.
public enum VirtqueueError: Error, Equatable, CustomStringConvertible {
    case ringOutsideMemory(part: String, address: UInt64)
    case headOutOfRange(head: UInt16)
    case availIndexJump(from: UInt16, to: UInt16)
    case descriptorOutOfRange(index: UInt16)
    case bufferOutsideMemory(address: UInt64, length: UInt32)
    case chainTooLong
    case readableAfterWritable
    case nestedIndirect
    case indirectWithNext
    case indirectNotNegotiated
    case badIndirectTable(length: UInt32)
    case tooManySegments
    case ringMisaligned(part: String, address: UInt64, alignment: Int)
    /// The call eventfd cannot be written (a pipe without a reader, a closed descriptor).
    case notifyFailed(errno: Int32)
    /// The file behind a guest memory region shrank under the mapping.
    case memoryLost

    /// Whether the whole ring is untrustworthy (as opposed to one chain).
    public var breaksQueue: Bool {
        switch self {
        case .ringOutsideMemory, .headOutOfRange, .availIndexJump, .ringMisaligned, .notifyFailed, .memoryLost: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case let .ringOutsideMemory(part, address): "the \(part) at 0x\(String(address, radix: 16)) is outside guest memory"
        case let .headOutOfRange(head): "chain head \(head) is outside the descriptor table"
        case let .availIndexJump(from, to): "available index jumped from \(from) to \(to), more than the queue size"
        case let .descriptorOutOfRange(index): "descriptor index \(index) is outside its table"
        case let .bufferOutsideMemory(address, length): "buffer at 0x\(String(address, radix: 16)) (+\(length)) is outside guest memory"
        case .chainTooLong: "descriptor chain is longer than the queue size (or loops)"
        case .readableAfterWritable: "readable descriptor after a writable one"
        case .nestedIndirect: "indirect descriptor inside an indirect table"
        case .indirectWithNext: "indirect descriptor with the NEXT flag"
        case .indirectNotNegotiated: "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case let .badIndirectTable(length): "indirect table of \(length) bytes"
        case .tooManySegments: "descriptor chain maps to too many memory segments"
        case let .ringMisaligned(part, address, alignment): "the \(part) at 0x\(String(address, radix: 16)) is not \(alignment)-byte aligned (in the front-end's mapping or in ours: a region's file offset can break it)"
        case let .notifyFailed(errno): "the call descriptor cannot be signalled: \(SystemError.describe(errno))"
        case .memoryLost: "a guest memory region lost its backing: the front-end shrank its file"
        }
    }
}
