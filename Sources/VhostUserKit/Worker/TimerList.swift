/// A group's pending one-shot timers, ordered by deadline (monotonic nanoseconds). Devices hold a
/// few timers at a time, so a sorted array beats a heap; its capacity is kept, so re-arming a timer
/// allocates nothing.
struct TimerList {
    private var entries: [(deadline: UInt64, id: UInt32)] = []
    private var lastID: UInt32 = 0

    init() { entries.reserveCapacity(16) }

    /// The earliest deadline, if any timer is pending.
    var nextDeadline: UInt64? { entries.first?.deadline }

    /// Adds a timer for `deadline`; timers with equal deadlines fire in the order they were set.
    mutating func add(deadline: UInt64) -> GroupTimer {
        lastID &+= 1
        var position = entries.count
        while position > 0 && entries[position - 1].deadline > deadline { position -= 1 }
        entries.insert((deadline, lastID), at: position)
        return GroupTimer(id: lastID)
    }

    /// Removes `timer`; false when it already fired or was cancelled.
    @discardableResult
    mutating func remove(_ timer: GroupTimer) -> Bool {
        guard let position = entries.firstIndex(where: { $0.id == timer.id }) else { return false }
        entries.remove(at: position)
        return true
    }

    /// Takes the earliest timer whose deadline is at or before `now`.
    mutating func popExpired(now: UInt64) -> GroupTimer? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        entries.removeFirst()
        return GroupTimer(id: first.id)
    }
}
