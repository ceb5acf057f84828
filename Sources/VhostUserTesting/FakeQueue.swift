import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A buffer in a chain the fake driver submits.
public struct BufferSpec: Sendable, Equatable {
    public var address: UInt64
    public var length: UInt32
    public var writable: Bool
    public init(address: UInt64, length: UInt32, writable: Bool) {
        self.address = address; self.length = length; self.writable = writable
    }
    public static func readable(_ address: UInt64, _ length: Int) -> BufferSpec { .init(address: address, length: UInt32(length), writable: false) }
    public static func writable(_ address: UInt64, _ length: Int) -> BufferSpec { .init(address: address, length: UInt32(length), writable: true) }
}

/// A used-ring element as the driver reads it.
public struct UsedElement: Sendable, Equatable {
    public var id: UInt32
    public var length: UInt32
}

/// The driver side of one split virtqueue in fake guest memory: lays out the rings, builds direct and
/// indirect chains, kicks, waits for calls and reads used elements.
public final class FakeQueue {
    public let index: Int
    public let size: Int
    public let memory: FakeGuestMemory
    public let layout: SplitRingLayout
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64
    public let kick: EventFD
    public let call: EventFD
    /// Whether EVENT_IDX was negotiated: the driver then writes used_event to ask for every interrupt.
    public var eventIdx = false
    /// The connection that set this queue up, kept open for as long as the queue is used.
    public var connection: FakeFrontend?

    public private(set) var availIndex: UInt16 = 0
    public private(set) var lastUsed: UInt16 = 0
    private var nextDescriptor = 0

    /// Lays out a ring of `size` entries in region 0 of `memory`.
    public init(index: Int, size: Int, memory: FakeGuestMemory) throws {
        self.index = index
        self.size = size
        self.memory = memory
        layout = SplitRingLayout(size: size)
        descriptorTable = memory.allocate(layout.descriptorTableBytes, alignment: 16, region: 0)
        availableRing = memory.allocate(layout.availableRingBytes, alignment: 2, region: 0)
        usedRing = memory.allocate(layout.usedRingBytes, alignment: 4, region: 0)
        kick = try EventFD()
        call = try EventFD()
    }

    /// The ring addresses in the front-end's virtual address space, as SET_VRING_ADDR sends them.
    public var address: VringAddress {
        VringAddress(index: UInt32(index), descriptorTable: memory.userAddress(descriptorTable),
                     usedRing: memory.userAddress(usedRing), availableRing: memory.userAddress(availableRing))
    }

    // MARK: Building chains

    /// Writes descriptor `slot` of the table at `table` (the queue's own table by default).
    public func writeDescriptor(_ slot: Int, address: UInt64, length: UInt32, flags: UInt16, next: UInt16, table: UInt64? = nil) {
        let d = memory.pointer((table ?? descriptorTable) + UInt64(slot * SplitRingLayout.descriptorSize))
        d.storeBytes(of: address.littleEndian, as: UInt64.self)
        d.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        d.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    /// Puts `head` in the next available slot and publishes the new available index (release order).
    /// `advance` lets a test jump the index by more than one to break the ring on purpose.
    public func makeAvailable(head: UInt16, advance: UInt16 = 1) {
        let slot = Int(availIndex) & (size - 1)
        memory.pointer(availableRing + UInt64(layout.availEntryOffset(slot))).storeBytes(of: head.littleEndian, as: UInt16.self)
        availIndex &+= advance
        vhu_store_release_u16(memory.pointer(availableRing + UInt64(SplitRingLayout.availIndexOffset)), availIndex)
    }

    /// Builds a chain of `buffers` from free descriptors, makes it available and returns its head.
    /// With `indirect`, the buffers go in an indirect table and the ring holds one descriptor.
    @discardableResult
    public func submit(_ buffers: [BufferSpec], indirect: Bool = false) -> UInt16 {
        precondition(!buffers.isEmpty)
        let head = UInt16(nextDescriptor)
        if indirect {
            let table = memory.allocate(buffers.count * SplitRingLayout.descriptorSize, alignment: 16)
            writeChain(buffers, table: table, firstSlot: 0)
            writeDescriptor(nextDescriptor, address: table, length: UInt32(buffers.count * SplitRingLayout.descriptorSize),
                            flags: SplitRingLayout.flagIndirect, next: 0)
            nextDescriptor = (nextDescriptor + 1) % size
        } else {
            writeChain(buffers, table: nil, firstSlot: nextDescriptor)
            nextDescriptor = (nextDescriptor + buffers.count) % size
        }
        makeAvailable(head: head)
        return head
    }

    private func writeChain(_ buffers: [BufferSpec], table: UInt64?, firstSlot: Int) {
        let tableSize = table == nil ? size : buffers.count
        for (i, b) in buffers.enumerated() {
            let slot = (firstSlot + i) % tableSize
            let last = i == buffers.count - 1
            let flags = (b.writable ? SplitRingLayout.flagWrite : 0) | (last ? 0 : SplitRingLayout.flagNext)
            writeDescriptor(slot, address: b.address, length: b.length, flags: flags, next: UInt16((slot + 1) % tableSize), table: table)
        }
    }

    // MARK: Notifications and completions

    public func notifyDevice() { kick.signal() }

    /// Used elements the device published since the last call.
    public func takeUsed() -> [UsedElement] {
        let usedIndexPointer = memory.pointer(usedRing + UInt64(SplitRingLayout.usedIndexOffset))
        var result: [UsedElement] = []
        while true {
            let usedIndex = vhu_load_acquire_u16(usedIndexPointer)
            while lastUsed != usedIndex {
                let e = memory.pointer(usedRing + UInt64(layout.usedElementOffset(Int(lastUsed) & (size - 1))))
                result.append(UsedElement(id: UInt32(littleEndian: e.load(as: UInt32.self)),
                                          length: UInt32(littleEndian: e.load(fromByteOffset: 4, as: UInt32.self))))
                lastUsed &+= 1
            }
            guard eventIdx else { return result }
            // Ask to be interrupted for the very next used element, then look once more: an element the
            // device published before it could see the new used_event raises no interrupt (the
            // driver's half of virtio 1.2, 2.7.10: store used_event, full barrier, re-check used->idx).
            vhu_store_release_u16(memory.pointer(availableRing + UInt64(layout.usedEventOffset)), lastUsed)
            vhu_fence_seq_cst()
            if vhu_load_acquire_u16(usedIndexPointer) == lastUsed { return result }
        }
    }

    /// Waits (on the call eventfd, bounded by `timeoutMilliseconds`) until `count` used elements have
    /// arrived and returns them; throws on timeout.
    public func waitForUsed(_ count: Int = 1, timeoutMilliseconds: Int = 5000) throws -> [UsedElement] {
        var collected = takeUsed()
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while collected.count < count {
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else { throw FakeFrontendError.timeout("\(count) used elements on queue \(index) (got \(collected.count))") }
            _ = call.wait(timeoutMilliseconds: Int32(left))
            collected += takeUsed()
        }
        return collected
    }

    /// Waits until the device has taken every chain made available so far: with EVENT_IDX, the
    /// avail_event a worker writes before it sleeps has reached `availIndex`. For a test that must
    /// know a request is in the device's hands (not still in the ring) before it stops the queue.
    public func waitUntilTaken(timeoutMilliseconds: Int = 5000) throws {
        guard eventIdx else { throw FakeFrontendError.unexpectedReply("EVENT_IDX not negotiated on queue \(index): taken chains cannot be seen") }
        let availEvent = memory.pointer(usedRing + UInt64(layout.availEventOffset))
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while vhu_load_acquire_u16(availEvent) != availIndex {
            guard monotonicMilliseconds() < deadline else {
                throw FakeFrontendError.timeout("the device to take chains up to \(availIndex) on queue \(index) (avail_event \(vhu_load_acquire_u16(availEvent)))")
            }
            usleep(500)
        }
    }

    /// The device's used index as published.
    public var publishedUsedIndex: UInt16 {
        vhu_load_acquire_u16(memory.pointer(usedRing + UInt64(SplitRingLayout.usedIndexOffset)))
    }
}

func monotonicMilliseconds() -> Int { Int(monotonicNanoseconds() / 1_000_000) }
