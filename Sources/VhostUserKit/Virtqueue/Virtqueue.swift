import CVhostUser
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A running split virtqueue, owned by exactly one queue worker thread.
///
/// A device uses it like ACRN's vq_getchain / vq_relchain / vq_endchains: `nextChain()` hands out the
/// next available request as host buffers, `complete(_:written:)` returns it to the used ring, and the
/// worker publishes the used index and notifies the driver once per batch. Completions may come in any
/// order; completions made on other threads go through `completionPort`.
///
/// The ring indices are the only memory shared with a driver that runs concurrently: the available
/// index is read with acquire ordering (virtio 1.2, 2.7.13.3), the used index is written with release
/// ordering after the used elements (2.7.14), and event-index checks use a full fence.
public final class Virtqueue: @unchecked Sendable {
    public let index: Int
    public let size: Int
    public let eventIdx: Bool
    /// Completions from threads other than the worker's.
    public let completionPort: CompletionPort

    let memory: GuestMemory
    private let layout: SplitRingLayout
    private let mask: UInt16
    private let descriptors: UnsafeMutableRawPointer
    private let avail: UnsafeMutableRawPointer
    private let used: UnsafeMutableRawPointer
    private let indirectAllowed: Bool
    private let malformedChainPolicy: MalformedChainPolicy
    private let call: EventFD?
    private let err: EventFD?
    private let logger: Logger
    /// The dirty log while live migration logs this ring (VHOST_F_LOG_ALL and the ring's log flag),
    /// else nil: every write into guest memory checks it once.
    private let dirtyLog: DirtyLog?
    /// The used ring's guest physical address (SET_VRING_ADDR's log_guest_addr), for logging its writes.
    private let usedLogAddress: UInt64
    /// SET_LOG_FD's eventfd: told after each logged publish (front-ends that poll the log pass none).
    private let logCall: EventFD?
    /// Host segments of the chain being handed out: reused for every chain, never reallocated.
    private let scratch: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>

    /// The next available-ring slot to read (the vring base).
    public private(set) var nextAvail: UInt16
    /// The next used-ring slot to fill.
    public private(set) var nextUsed: UInt16
    private var publishedUsed: UInt16
    private var signalledUsed: UInt16 = 0
    private var signalledUsedValid = false

    /// In-flight bookkeeping in the shared inflight region, when the front-end set one up.
    private var inflight: InflightTracker?
    /// Heads that were in flight when a previous back-end process stopped, handed out first.
    private var resubmit: [UInt16] = []
    private var resubmitted = 0

    /// Set when the ring itself cannot be trusted; the queue hands out no more chains.
    public private(set) var brokenReason: VirtqueueError?
    /// Chains returned to the driver unprocessed because they were malformed.
    public private(set) var malformedChains = 0
    /// Set by the worker when the queue must stop: `nextChain()` then hands out nothing more, so a
    /// handler's pass ends after the request in hand, however many the driver queued.
    private let stopFlag = Atomic<Bool>(false)
    /// The memory guard's fault count when the queue last checked its memory.
    private var knownFaults = MemoryGuard.faultCount

    /// Resolves the ring addresses (front-end virtual addresses) in `memory` and checks that all three
    /// parts lie inside it, aligned as the spec requires (`RingLocation`). With a `dirtyLog`, every
    /// write into guest memory is logged: the used ring at `address.log`, buffers where the chain says.
    public init(index: Int, size: Int, address: VringAddress, base: UInt16, memory: GuestMemory,
                features: UInt64, call: EventFD?, err: EventFD?, completionPort: CompletionPort,
                inflightRegion: UnsafeMutableRawPointer? = nil, malformedChainPolicy: MalformedChainPolicy = .returnEmpty,
                dirtyLog: DirtyLog? = nil, logCall: EventFD? = nil, logger: Logger) throws(VirtqueueError) {
        precondition(SplitRingLayout.isValid(size: size))
        let layout = SplitRingLayout(size: size)
        let ring = try RingLocation(address, size: size, in: memory)
        self.index = index
        self.size = size
        self.layout = layout
        self.mask = UInt16(truncatingIfNeeded: size - 1)
        self.memory = memory
        self.descriptors = ring.descriptors
        self.avail = ring.available
        self.used = ring.used
        self.eventIdx = features & VirtioFeature.ringEventIdx != 0
        self.indirectAllowed = features & VirtioFeature.ringIndirectDesc != 0
        self.malformedChainPolicy = malformedChainPolicy
        self.call = call
        self.err = err
        self.completionPort = completionPort
        self.logger = logger
        self.dirtyLog = dirtyLog
        self.usedLogAddress = address.log
        self.logCall = logCall
        self.nextAvail = base
        let usedIndex = vhu_load_acquire_u16(ring.used + SplitRingLayout.usedIndexOffset)
        self.nextUsed = usedIndex
        self.publishedUsed = usedIndex
        // A chain maps to at most one segment per descriptor per region it crosses.
        self.scratch = .allocate(capacity: 2 * size + 16)
        if let inflightRegion {
            var tracker = InflightTracker(region: inflightRegion, size: size)
            resubmit = tracker.recover(usedIndex: usedIndex)
            inflight = tracker
            // Everything up to the used index was completed; what was in flight follows it.
            nextAvail = usedIndex &+ UInt16(truncatingIfNeeded: resubmit.count)
            if !resubmit.isEmpty {
                logger.info("queue \(index): resubmitting \(resubmit.count) request(s) left in flight by the previous back-end")
            }
        }
        // Memory that lost pages stays lost: a restarted queue on it starts stopped.
        if memory.faulted { markBroken(.memoryLost) }
    }

    deinit { scratch.deallocate() }

    // MARK: Available ring

    /// Whether the driver has made buffers available that have not been taken yet. Always false for a
    /// broken queue: it waits, without spinning, for the front-end to set it up again.
    @inline(__always)
    public var hasAvailable: Bool {
        guard brokenReason == nil else { return false }
        return resubmitted < resubmit.count || vhu_load_acquire_u16(avail + SplitRingLayout.availIndexOffset) != nextAvail
    }

    /// Whether the worker is stopping (GET_VRING_BASE, a disconnect, new memory or features): a handler
    /// that holds work of its own should finish the request in hand and return.
    @inline(__always)
    public var isStopping: Bool { stopFlag.load(ordering: .relaxed) }

    /// Asks the handler's pass to end: `nextChain()` returns nil from now on.
    func requestStop() { stopFlag.store(true, ordering: .relaxed) }

    /// The next available chain, or nil when there is none, the ring is broken or the worker is
    /// stopping. A malformed chain is logged, returned to the driver with a length of 0, and skipped.
    public func nextChain() -> DescriptorChain? {
        if isStopping { return nil }
        while resubmitted < resubmit.count && brokenReason == nil {
            let head = resubmit[resubmitted]
            resubmitted += 1
            if let chain = validChain(head: head) { return chain }
        }
        while brokenReason == nil {
            let availIndex = vhu_load_acquire_u16(avail + SplitRingLayout.availIndexOffset)
            if availIndex == nextAvail { return nil }
            if Int(availIndex &- nextAvail) > size {
                markBroken(.availIndexJump(from: nextAvail, to: availIndex))
                return nil
            }
            let head = UInt16(littleEndian: avail.load(fromByteOffset: layout.availEntryOffset(Int(nextAvail & mask)), as: UInt16.self))
            nextAvail &+= 1
            guard Int(head) < size else {
                markBroken(.headOutOfRange(head: head))
                return nil
            }
            inflight?.taken(head)
            if let chain = validChain(head: head) { return chain }
        }
        return nil
    }

    /// The chain at `head`, or nil for a malformed one, which is returned to the driver with length 0
    /// or stops the queue, as the device's policy says.
    @inline(__always)
    private func validChain(head: UInt16) -> DescriptorChain? {
        do {
            return try walk(head: head)
        } catch {
            malformedChains += 1
            switch malformedChainPolicy {
            case .returnEmpty:
                logger.error("queue \(index): dropping chain \(head): \(error)")
                complete(head: head, written: 0)
            case .stopQueue:
                markBroken(error)
            }
            return nil
        }
    }

    /// Follows a chain from `head`, translating every buffer and enforcing the spec's rules:
    /// indices inside their table, at most `size` descriptors (which also catches loops), readable
    /// before writable, indirect tables only when negotiated, never nested, never with NEXT.
    private func walk(head: UInt16) throws(VirtqueueError) -> DescriptorChain {
        var table = UnsafeRawPointer(descriptors)
        var tableSize = size
        var index = head
        var visited = 0
        var inIndirect = false
        var segments = 0
        var readableSegments = 0
        var readableLength = 0
        var writableLength = 0
        var sawWritable = false
        let scratch = self.scratch
        while true {
            guard Int(index) < tableSize else { throw .descriptorOutOfRange(index: index) }
            let descriptor = RawDescriptor(table, index: index)
            let (address, length) = (descriptor.address, descriptor.length)

            if descriptor.isIndirect {
                guard indirectAllowed else { throw .indirectNotNegotiated }
                guard !inIndirect else { throw .nestedIndirect }
                guard !descriptor.hasNext else { throw .indirectWithNext }
                guard length > 0, length % UInt32(SplitRingLayout.descriptorSize) == 0 else { throw .badIndirectTable(length: length) }
                guard let t = memory.contiguous(guest: address, length: Int(length)) else {
                    throw .bufferOutsideMemory(address: address, length: length)
                }
                table = UnsafeRawPointer(t)
                tableSize = Int(length) / SplitRingLayout.descriptorSize
                index = 0
                inIndirect = true
                continue
            }

            // Only buffer descriptors count towards the chain length: the indirect descriptor itself is
            // not part of the chain (Linux fills an indirect table with up to queue-size descriptors, e.g.
            // virtio-blk with QEMU's seg_max = queue size - 2). A chain has at most one indirect
            // descriptor, so this still bounds the walk and catches loops.
            visited += 1
            guard visited <= size else { throw .chainTooLong }
            let writable = descriptor.isWritable
            if writable { sawWritable = true } else if sawWritable { throw .readableAfterWritable }
            if length > 0 {
                var overflow = false
                let inside = memory.forEachSegment(guest: address, length: length) { host, count in
                    guard segments < scratch.count else { overflow = true; return false }
                    scratch[segments] = UnsafeMutableRawBufferPointer(start: host, count: count)
                    segments += 1
                    return true
                }
                if overflow { throw .tooManySegments }
                guard inside else { throw .bufferOutsideMemory(address: address, length: length) }
            }
            if writable {
                writableLength += Int(length)
            } else {
                readableLength += Int(length)
                readableSegments = segments
            }
            guard descriptor.hasNext else { break }
            index = descriptor.next
        }
        let base = UnsafeBufferPointer(scratch)
        return DescriptorChain(
            head: head,
            readable: UnsafeBufferPointer(rebasing: base[0..<readableSegments]),
            writable: UnsafeBufferPointer(rebasing: base[readableSegments..<segments]),
            readableLength: readableLength,
            writableLength: writableLength)
    }

    // MARK: Used ring

    /// Returns `chain` to the driver, reporting `written` bytes (clamped to what the chain can hold).
    /// Every byte a device writes into guest memory becomes visible to the driver through this call
    /// (or `complete(head:written:)`), which is why dirty-page logging happens there: the first
    /// `written` bytes of the chain's writable buffers are logged, so a device reports what it wrote.
    @inline(__always)
    public func complete(_ chain: DescriptorChain, written: Int) {
        complete(head: chain.head, written: UInt32(clamping: min(max(0, written), chain.writableLength)))
    }

    /// Fills the next used-ring element; not visible to the driver until `publish()`.
    @inline(__always)
    public func complete(head: UInt16, written: UInt32) {
        let element = used + layout.usedElementOffset(Int(nextUsed & mask))
        element.storeBytes(of: UInt32(head).littleEndian, as: UInt32.self)
        element.storeBytes(of: written.littleEndian, toByteOffset: 4, as: UInt32.self)
        if let dirtyLog {
            if written > 0, dirtyLog.logsBuffers { logWrittenBuffers(head: head, written: written, in: dirtyLog) }
            logUsed(offset: layout.usedElementOffset(Int(nextUsed & mask)), length: SplitRingLayout.usedElementSize, in: dirtyLog)
        }
        inflight?.completed(head)
        nextUsed &+= 1
    }

    // MARK: Dirty logging

    /// Logs the pages of the first `written` bytes of chain `head`'s writable buffers, walking the
    /// descriptors again by guest address (the chain's host views are gone when a completion comes
    /// from another thread). Bounded like `walk`; a descriptor the driver changed meanwhile only
    /// changes which pages are logged, never what the daemon touches.
    private func logWrittenBuffers(head: UInt16, written: UInt32, in log: DirtyLog) {
        var remaining = UInt64(written)
        var table = UnsafeRawPointer(descriptors)
        var tableSize = size
        var index = head
        var visited = 0
        var inIndirect = false
        while remaining > 0, Int(index) < tableSize {
            let descriptor = RawDescriptor(table, index: index)
            if descriptor.isIndirect {
                guard !inIndirect, descriptor.length % UInt32(SplitRingLayout.descriptorSize) == 0,
                      let t = memory.contiguous(guest: descriptor.address, length: Int(descriptor.length)) else { return }
                table = UnsafeRawPointer(t)
                tableSize = Int(descriptor.length) / SplitRingLayout.descriptorSize
                index = 0
                inIndirect = true
                continue
            }
            visited += 1
            guard visited <= size else { return }
            if descriptor.isWritable {
                let n = min(remaining, UInt64(descriptor.length))
                log.mark(guest: descriptor.address, length: n)
                remaining -= n
            }
            guard descriptor.hasNext else { return }
            index = descriptor.next
        }
    }

    /// Logs a write of `length` bytes at `offset` into the used ring.
    @inline(__always)
    private func logUsed(offset: Int, length: Int, in log: DirtyLog) {
        log.mark(guest: usedLogAddress &+ UInt64(offset), length: UInt64(length))
    }

    /// Publishes the used elements filled since the last call and interrupts the driver if it asked
    /// for it (EVENT_IDX: when used_event was crossed; otherwise unless NO_INTERRUPT is set).
    /// Returns whether the call eventfd was signalled.
    @discardableResult
    public func publish() -> Bool {
        guard nextUsed != publishedUsed else { return false }
        vhu_store_release_u16(used + SplitRingLayout.usedIndexOffset, nextUsed)
        if let dirtyLog {
            logUsed(offset: SplitRingLayout.usedIndexOffset, length: 2, in: dirtyLog)
            logCall?.signal()
        }
        inflight?.published(batch: Int(nextUsed &- publishedUsed), usedIndex: nextUsed)
        publishedUsed = nextUsed
        guard needsInterrupt(), call != nil else { return false }
        signalCall()
        return true
    }

    /// Writes the call eventfd; one that cannot take the signal (EPIPE, EBADF) stops the queue.
    private func signalCall() {
        if let call, !call.signal() { markBroken(.notifyFailed(errno: errno)) }
    }

    /// Signals the call eventfd once, whatever the driver asked for: after the front-end installs a new
    /// call descriptor on a ring that already has used elements, an interrupt may have been lost with
    /// the old descriptor (a back-end restart, a reconnect). Drivers tolerate a spurious interrupt;
    /// a lost one hangs them.
    func signalIfUsed() {
        if publishedUsed != 0 { signalCall() }
    }

    /// Stops the queue when the front-end shrank a file under guest memory and an access hit a lost
    /// page (the memory guard absorbed the fault). Cheap when nothing faulted: one atomic load.
    @inline(__always)
    func checkMemory() {
        let faults = MemoryGuard.faultCount
        guard faults != knownFaults else { return }
        knownFaults = faults
        if brokenReason == nil, memory.faulted { markBroken(.memoryLost) }
    }

    private func needsInterrupt() -> Bool {
        vhu_fence_seq_cst()
        if eventIdx {
            let old = signalledUsed
            let wasValid = signalledUsedValid
            signalledUsed = nextUsed
            signalledUsedValid = true
            guard wasValid else { return true }
            let usedEvent = vhu_load_relaxed_u16(avail + layout.usedEventOffset)
            return (nextUsed &- usedEvent &- 1) < (nextUsed &- old)
        }
        return vhu_load_relaxed_u16(avail) & SplitRingLayout.availNoInterrupt == 0
    }

    // MARK: Notification suppression

    /// Asks the driver not to kick while the worker is busy with the ring (without EVENT_IDX; with it,
    /// the stale avail_event already suppresses kicks).
    @inline(__always)
    public func disableNotifications() {
        if !eventIdx {
            vhu_store_relaxed_u16(used, SplitRingLayout.usedNoNotify)
            if let dirtyLog { logUsed(offset: 0, length: 2, in: dirtyLog) }
        }
    }

    /// Asks the driver to kick for the next buffer, then checks once more for buffers that raced with
    /// the request. Returns true when there is more work (the caller must not sleep).
    @inline(__always)
    public func enableNotifications() -> Bool {
        if eventIdx {
            vhu_store_relaxed_u16(used + layout.availEventOffset, nextAvail)
            if let dirtyLog { logUsed(offset: layout.availEventOffset, length: 2, in: dirtyLog) }
        } else {
            vhu_store_relaxed_u16(used, 0)
            if let dirtyLog { logUsed(offset: 0, length: 2, in: dirtyLog) }
        }
        vhu_fence_seq_cst()
        return hasAvailable
    }

    // MARK: Errors

    private func markBroken(_ reason: VirtqueueError) {
        brokenReason = reason
        logger.error("queue \(index) stopped: \(reason)")
        err?.signal()
    }
}
