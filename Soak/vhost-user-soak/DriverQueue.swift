import VhostUserKit
import VhostUserTesting

/// The driver side of one queue for a long run: unlike `FakeQueue.submit`, it recycles descriptors
/// (oldest freed first, so a completion naming a stale head is caught) and the guest memory of every
/// request, and it knows which head is in flight with which request.
final class DriverQueue {
    /// A request the device has not completed yet.
    struct Outstanding {
        var tag: Int
        var slot: Int
        var descriptors: [UInt16]
        /// The connection dropped (or the daemon died) while this request was in flight.
        var inFlightAtDrop = false
    }

    /// One used element checked against what was in flight.
    enum Completion {
        case request(Outstanding, usedLength: UInt32)
        /// A used element naming a head that is not in flight: a duplicate or an invented completion.
        case unknownHead(UInt16)
    }

    let ring: FakeQueue
    let memory: FakeGuestMemory
    let slabBytes: Int
    /// Requests in flight at most (each has a slab and an indirect table).
    let slots: Int
    private static let indirectEntries = LoadRequest.maxBuffers

    private var freeDescriptors: [UInt16]
    private var freeHead = 0
    private var freeCount: Int
    private var freeSlots: [Int]
    private var slabs: [UInt64]
    private var tables: [UInt64]
    private var inFlight: [Outstanding?]
    private(set) var outstandingCount = 0

    /// Lays out a ring of `size` in `memory` with `slots` request slabs spread over its regions.
    init(index: Int, size: Int, memory: FakeGuestMemory, slabBytes: Int, slots: Int) throws {
        ring = try FakeQueue(index: index, size: size, memory: memory)
        self.memory = memory
        self.slabBytes = slabBytes
        self.slots = slots
        freeDescriptors = (0..<size).map { UInt16($0) }
        freeCount = size
        freeSlots = Array((0..<slots).reversed())
        let regions = memory.regions.count
        slabs = (0..<slots).map { memory.allocate(slabBytes, alignment: 64, region: $0 % regions) }
        tables = (0..<slots).map { _ in memory.allocate(Self.indirectEntries * SplitRingLayout.descriptorSize, alignment: 16, region: 0) }
        inFlight = Array(repeating: nil, count: size)
    }

    /// Guest memory `FakeGuestMemory` must have for `queues` of these.
    static func memoryNeeded(size: Int, slabBytes: Int, slots: Int) -> Int {
        let layout = SplitRingLayout(size: size)
        return layout.descriptorTableBytes + layout.availableRingBytes + layout.usedRingBytes + 256
            + slots * (slabBytes + 64 + indirectEntries * SplitRingLayout.descriptorSize + 16)
    }

    /// The slab of the next free slot, for a profile to fill; nil when every slot is in flight or the
    /// free descriptors might not hold a request.
    func nextSlab() -> (slot: Int, bytes: UnsafeMutableRawBufferPointer)? {
        guard let slot = freeSlots.last, freeCount >= LoadRequest.maxBuffers else { return nil }
        return (slot, slab(slot))
    }

    private func slab(_ slot: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: memory.pointer(slabs[slot]), count: slabBytes)
    }

    /// Makes `request`, whose data is in the slab `nextSlab()` gave, available (not kicked). With
    /// `indirect` the buffers go in the slot's indirect table.
    func submit(_ request: LoadRequest, slot: Int, indirect: Bool) {
        precondition(freeSlots.last == slot && (1...LoadRequest.maxBuffers).contains(request.buffers.count))
        let needed = indirect ? 1 : request.buffers.count
        freeSlots.removeLast()
        var chain: [UInt16] = []
        for _ in 0..<needed {
            chain.append(freeDescriptors[freeHead])
            freeHead = (freeHead + 1) % freeDescriptors.count
            freeCount -= 1
        }
        func write(_ i: Int, _ b: SlabBuffer, slotIndex: Int, table: UInt64?, next: UInt16) {
            let last = i == request.buffers.count - 1
            let flags = (b.writable ? SplitRingLayout.flagWrite : 0) | (last ? 0 : SplitRingLayout.flagNext)
            ring.writeDescriptor(slotIndex, address: slabs[slot] + UInt64(b.offset), length: UInt32(b.length), flags: flags,
                                 next: next, table: table)
        }
        if indirect {
            for (i, b) in request.buffers.enumerated() { write(i, b, slotIndex: i, table: tables[slot], next: UInt16(i + 1)) }
            ring.writeDescriptor(Int(chain[0]), address: tables[slot],
                                 length: UInt32(request.buffers.count * SplitRingLayout.descriptorSize),
                                 flags: SplitRingLayout.flagIndirect, next: 0)
        } else {
            for (i, b) in request.buffers.enumerated() {
                write(i, b, slotIndex: Int(chain[i]), table: nil, next: i + 1 < chain.count ? chain[i + 1] : 0)
            }
        }
        inFlight[Int(chain[0])] = Outstanding(tag: request.tag, slot: slot, descriptors: chain)
        outstandingCount += 1
        ring.makeAvailable(head: chain[0])
    }

    /// Used elements published since the last call, matched with the requests in flight; each
    /// matched request's descriptors and slot are free again once `body` returns.
    func reap(_ body: (Completion, UnsafeMutableRawBufferPointer?) -> Void) {
        for element in ring.takeUsed() {
            guard element.id < UInt32(inFlight.count), let o = inFlight[Int(element.id)] else {
                body(.unknownHead(UInt16(truncatingIfNeeded: element.id)), nil)
                continue
            }
            body(.request(o, usedLength: element.length), slab(o.slot))
            release(head: Int(element.id))
        }
    }

    private func release(head: Int) {
        guard let o = inFlight[head] else { return }
        inFlight[head] = nil
        outstandingCount -= 1
        for d in o.descriptors {
            freeDescriptors[(freeHead + freeCount) % freeDescriptors.count] = d
            freeCount += 1
        }
        freeSlots.append(o.slot)
    }

    /// Marks every request in flight as in flight at a drop; returns how many there were.
    @discardableResult
    func markDropped() -> Int {
        for i in inFlight.indices where inFlight[i] != nil { inFlight[i]!.inFlightAtDrop = true }
        return outstandingCount
    }

    /// The requests in flight, by head.
    var outstanding: [(head: UInt16, request: Outstanding)] {
        inFlight.enumerated().compactMap { i, o in o.map { (UInt16(i), $0) } }
    }

    /// Forgets every request in flight (the ring is given up); returns them.
    func abandonAll() -> [Outstanding] {
        let all = outstanding.map(\.request)
        for (head, _) in outstanding { release(head: Int(head)) }
        return all
    }
}
