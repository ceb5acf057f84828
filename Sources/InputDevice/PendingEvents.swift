/// Events on their way to the driver: whole batches (each ending with SYN_REPORT) waiting for eventq
/// buffers, and the batch being assembled after them. Bounded: when `capacity` events are held, the
/// oldest whole batches are dropped to make room (the driver then misses complete reports, never part
/// of one). A fixed ring of packed events: appending and delivering allocate nothing.
public struct PendingEvents: Sendable {
    /// The most events held, complete batches and the open one together.
    public let capacity: Int
    /// The most events of a batch before its SYN_REPORT: an open batch that grows beyond it is
    /// discarded (a source that never sends SYN_REPORT cannot fill the buffer).
    public let maxBatch: Int
    private var ring: [UInt64]
    private var head = 0
    /// Events held in all.
    public private(set) var count = 0
    /// Events in complete batches (from `head`); the open batch follows them.
    public private(set) var completeCount = 0
    /// Batches dropped (oldest first, or an overlong open one) since the device started.
    public private(set) var droppedBatches = 0
    /// Events dropped with them.
    public private(set) var droppedEvents = 0

    public init(capacity: Int, maxBatch: Int) {
        precondition(capacity >= 2 * maxBatch && maxBatch > 1, "the buffer holds at least two of the longest batches")
        self.capacity = capacity
        self.maxBatch = maxBatch
        ring = [UInt64](repeating: 0, count: capacity)
    }

    public var openCount: Int { count - completeCount }
    public var hasCompleteBatch: Bool { completeCount > 0 }

    /// Whether an append would drop something.
    public enum AppendResult: Equatable { case held, droppedOldest, droppedOpenBatch }

    /// Adds `event` to the open batch; a SYN_REPORT completes it.
    @discardableResult
    public mutating func append(_ event: InputEvent) -> AppendResult {
        var result = AppendResult.held
        if openCount >= maxBatch && !event.isSynReport {
            // A batch longer than any device sends: discard it rather than split it.
            droppedEvents += openCount
            droppedBatches += 1
            count = completeCount
            result = .droppedOpenBatch
        }
        if count == capacity {
            dropOldestBatch()
            if result == .held { result = .droppedOldest }
        }
        ring[(head + count) % capacity] = event.packed
        count += 1
        if event.isSynReport { completeCount = count }
        return result
    }

    /// Discards the open batch (e.g. the source reported SYN_DROPPED).
    public mutating func discardOpenBatch() { count = completeCount }

    /// The length of the oldest complete batch (SYN_REPORT included), 0 when there is none.
    public var firstBatchLength: Int {
        guard completeCount > 0 else { return 0 }
        var n = 0
        while n < completeCount {
            n += 1
            if InputEvent(packed: ring[(head + n - 1) % capacity]).isSynReport { break }
        }
        return n
    }

    /// The `i`th event held (0: the oldest).
    public func event(at i: Int) -> InputEvent { InputEvent(packed: ring[(head + i) % capacity]) }

    /// Removes the `n` oldest events, which must be complete ones (delivered).
    public mutating func removeFirst(_ n: Int) {
        precondition(n <= completeCount)
        head = (head + n) % capacity
        count -= n
        completeCount -= n
    }

    public mutating func removeAll() {
        head = 0
        count = 0
        completeCount = 0
    }

    private mutating func dropOldestBatch() {
        // With capacity >= 2 * maxBatch and at most maxBatch + 1 events open, a complete batch exists.
        let n = firstBatchLength
        precondition(n > 0)
        removeFirst(n)
        droppedBatches += 1
        droppedEvents += n
    }
}
