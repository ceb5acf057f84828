/// Byte layout of a split virtqueue (virtio 1.2, 2.7): the descriptor table, the available ring and the
/// used ring. Shared by the device side and the fake frontend so both agree on every offset.
public struct SplitRingLayout: Sendable, Equatable {
    /// The largest queue size a split ring may have.
    public static let maxSize = 32768

    public static let descriptorSize = 16
    public static let usedElementSize = 8

    /// Descriptor flags (2.7.5).
    public static let flagNext: UInt16 = 1
    public static let flagWrite: UInt16 = 2
    public static let flagIndirect: UInt16 = 4
    /// avail->flags: the driver does not want interrupts (when EVENT_IDX is not negotiated).
    public static let availNoInterrupt: UInt16 = 1
    /// used->flags: the device does not want kicks (when EVENT_IDX is not negotiated).
    public static let usedNoNotify: UInt16 = 1

    public let size: Int
    public init(size: Int) { self.size = size }

    /// Whether `size` is a valid split-ring size no larger than `limit`: a power of two from 1 to 32768.
    public static func isValid(size: Int, limit: Int = maxSize) -> Bool {
        size > 0 && size <= min(limit, maxSize) && size & (size - 1) == 0
    }

    public var descriptorTableBytes: Int { Self.descriptorSize * size }
    /// flags, idx, ring[size], used_event.
    public var availableRingBytes: Int { 6 + 2 * size }
    /// flags, idx, ring[size] of (id, len), avail_event.
    public var usedRingBytes: Int { 6 + Self.usedElementSize * size }

    public static let availIndexOffset = 2
    public func availEntryOffset(_ slot: Int) -> Int { 4 + 2 * slot }
    /// used_event lives after the available ring entries.
    public var usedEventOffset: Int { 4 + 2 * size }
    public static let usedIndexOffset = 2
    public func usedElementOffset(_ slot: Int) -> Int { 4 + Self.usedElementSize * slot }
    /// avail_event lives after the used ring elements.
    public var availEventOffset: Int { 4 + Self.usedElementSize * size }
}
