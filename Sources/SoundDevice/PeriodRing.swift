import VhostUserKit

/// A bounded ring of period slots between the queue group's worker and a backend thread (alsa's
/// blocking I/O thread, PipeWire's data thread): both sides copy whole periods in and out under a
/// short lock, never waiting for the other; a full ring refuses a period, an empty one has none.
final class PeriodRing: Sendable {
    private struct Slots {
        var slots: [[UInt8]]
        var first = 0
        var count = 0
    }
    private let state: Locked<Slots>
    let periodBytes: Int

    init(slots: Int, periodBytes: Int) {
        self.periodBytes = periodBytes
        state = Locked(Slots(slots: (0..<slots).map { _ in [UInt8](repeating: 0, count: periodBytes) }))
    }

    /// Appends a period (at most `periodBytes` of `period`); false when the ring is full.
    func push(_ period: UnsafeRawBufferPointer) -> Bool {
        state.withLock { ring -> Bool in
            guard ring.count < ring.slots.count else { return false }
            let slot = (ring.first + ring.count) % ring.slots.count
            ring.slots[slot].withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: period.prefix($0.count))) }
            ring.count += 1
            return true
        }
    }

    /// Takes the oldest period into `period` (at most its size); false when the ring is empty.
    func pop(into period: UnsafeMutableRawBufferPointer) -> Bool {
        state.withLock { ring -> Bool in
            guard ring.count > 0 else { return false }
            ring.slots[ring.first].withUnsafeBytes { period.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(period.count))) }
            ring.first = (ring.first + 1) % ring.slots.count
            ring.count -= 1
            return true
        }
    }

    /// Periods held.
    var count: Int { state.withLock { $0.count } }
    var capacity: Int { state.withLock { $0.slots.count } }
}
