import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The queues that one worker thread serves together, and what their handler may do on that thread:
/// watch host descriptors, set timers and ask for a queue to be processed. One epoll set waits for
/// everything (the members' kicks and completions, the watched descriptors, the waker), so state the
/// members share needs no lock, and an idle group costs no CPU.
///
/// The kit makes a group for every set of queues a device groups together (`VhostUserDevice.queueGroups`)
/// and runs it on a `vhu-queue-N` thread; a test can drive one on its own thread with `turn`.
public final class QueueGroup: @unchecked Sendable {  // handed to its worker when it starts and used there alone; other threads use only `waker` and `requestStop` (an eventfd and atomics)
    /// The running member queues, in device queue order.
    public let queues: [Virtqueue]
    /// Wakes the group from any thread; the handler gets `GroupEvent.wake`.
    public let waker: GroupWaker
    public let logger: Logger

    private struct Member {
        let queue: Virtqueue
        let kick: EventFD?
        /// Process the queue in the next turn.
        var due = true
        var state = State.idle
        /// When a throttled queue (`.retry`) is due again (monotonic nanoseconds).
        var retryAt: UInt64 = 0
    }
    private enum State {
        /// Notifications are on; the queue waits for a kick.
        case idle
        /// Processed with notifications off: the ring is checked again before the worker sleeps.
        case settling
        /// Throttled until `retryAt`, notifications off.
        case retrying
    }

    private let handler: any GroupHandler
    /// The members' state, touched on every turn: a buffer, not an array, so the hot path pays no
    /// exclusivity checks or copies.
    private let members: UnsafeMutableBufferPointer<Member>
    /// Member position by device queue index (-1: not a member).
    private let positions: [Int]
    private let epoll: Epoll
    private let pollNanoseconds: UInt64
    private let hasPolledMember: Bool
    private var timers = TimerList()
    /// Watched descriptors by watch id.
    private var watches: [UInt32: Int32] = [:]
    private var lastWatch: UInt32 = 0
    private let stopFlag = Atomic<Bool>(false)
    /// Only the group's thread touches it, once a busy turn.
    @exclusivity(unchecked) private var busyTurns = 0
    /// The completion port's swap buffer, reused by every drain.
    private let spare = UnsafeMutablePointer<[UInt64]>.allocate(capacity: 1)
    private let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(eventCapacity))
    private let readiness = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(eventCapacity))

    private static let eventCapacity: Int32 = 16
    /// How often a queue without a kick eventfd (bit 8 of SET_VRING_KICK: "poll the ring") is polled.
    static let noKickPollMilliseconds: Int32 = 1
    /// While queues stay busy, the group looks at its descriptors and timers every this many turns.
    private static let busyTurnsPerWait = 16

    private enum Token: UInt64 { case kick = 0, queueWake, waker, watch }
    private static func token(_ kind: Token, _ value: Int) -> UInt64 { kind.rawValue << 32 | UInt64(value) }

    /// A group of `queues` served by `handler`. `kicks` pairs a kick eventfd with each queue (nil, or
    /// missing: the ring is polled every millisecond). `pollNanoseconds` is how long a busy group keeps
    /// polling its rings before it sleeps.
    public init(queues: [Virtqueue], kicks: [EventFD?] = [], handler: any GroupHandler, pollNanoseconds: UInt64 = 0,
                logger: Logger) throws(SystemError) {
        precondition(!queues.isEmpty, "a queue group needs a queue")
        self.queues = queues
        self.handler = handler
        self.pollNanoseconds = pollNanoseconds
        self.logger = logger
        members = .allocate(capacity: queues.count)
        _ = members.initialize(from: queues.indices.map { Member(queue: queues[$0], kick: $0 < kicks.count ? kicks[$0] : nil) })
        spare.initialize(to: [])
        spare.pointee.reserveCapacity(64)
        hasPolledMember = members.contains { $0.kick == nil }
        var positions = [Int](repeating: -1, count: (queues.map(\.index).max() ?? 0) + 1)
        for (position, queue) in queues.enumerated() { positions[queue.index] = position }
        self.positions = positions
        waker = GroupWaker(event: try EventFD())
        epoll = try Epoll()
        for (position, member) in members.enumerated() {
            // Edge-triggered: the kick descriptor is the front-end's, and one that stays readable (a
            // hung-up pipe, a semaphore eventfd with a huge count) must not keep the worker awake.
            if let kick = member.kick { try epoll.add(kick.rawValue, token: Self.token(.kick, position), edgeTriggered: true) }
            try epoll.add(member.queue.completionPort.wake.rawValue, token: Self.token(.queueWake, position))
        }
        try epoll.add(waker.event.rawValue, token: Self.token(.waker, 0))
    }

    deinit {
        members.deinitialize()
        members.deallocate()
        spare.deinitialize(count: 1)
        spare.deallocate()
        tokens.deallocate()
        readiness.deallocate()
    }

    // MARK: For the handler (on the group's thread)

    /// The member queue with device index `index`, if it runs in this group.
    public func queue(_ index: Int) -> Virtqueue? {
        position(of: index).map { queues[$0] }
    }

    /// Has the handler process queue `index` in the next turn, as if it had been kicked (e.g. host data
    /// arrived for a receive queue). Does nothing for a queue outside the group.
    public func wakeQueue(_ index: Int) {
        guard let position = position(of: index) else { return }
        members[position].due = true
    }

    /// The member position of device queue `index`, or nil when it is not a running member.
    private func position(of index: Int) -> Int? {
        guard index >= 0, index < positions.count, positions[index] >= 0 else { return nil }
        return positions[index]
    }

    /// Starts watching `fd` (which the handler keeps open until it unwatches it) for `interest`; the
    /// handler gets `.ready` while the descriptor is ready (level-triggered).
    public func watch(_ fd: Int32, for interest: Readiness) throws(SystemError) -> Watch {
        lastWatch &+= 1
        try epoll.add(fd, token: Self.token(.watch, Int(lastWatch)), interest: interest)
        watches[lastWatch] = fd
        return Watch(id: lastWatch)
    }

    /// Changes what a watched descriptor is watched for (e.g. add `.writable` while output is queued).
    /// Does nothing for a watch already removed.
    public func change(_ watch: Watch, to interest: Readiness) throws(SystemError) {
        guard let fd = watches[watch.id] else { return }
        try epoll.modify(fd, token: Self.token(.watch, Int(watch.id)), interest: interest)
    }

    /// Stops watching; an event already collected for it is not delivered. Call it before closing the
    /// descriptor.
    public func unwatch(_ watch: Watch) {
        guard let fd = watches.removeValue(forKey: watch.id) else { return }
        epoll.remove(fd)
    }

    /// Sets a one-shot timer: the handler gets `.timer` once, at the first turn after `delay` (epoll's
    /// millisecond resolution, never early).
    public func schedule(after delay: Duration) -> GroupTimer {
        let (seconds, attoseconds) = delay.components
        let nanoseconds = UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        return timers.add(deadline: monotonicNanoseconds() &+ nanoseconds)
    }

    /// Cancels a timer; returns false when it already fired or was cancelled.
    @discardableResult
    public func cancel(_ timer: GroupTimer) -> Bool { timers.remove(timer) }

    /// Whether the group is stopping: a handler holding work of its own should return soon.
    public var isStopping: Bool { stopFlag.load(ordering: .acquiring) }

    // MARK: Driving the group

    /// Lets the handler set up (on the thread that will drive the group).
    public func start() { handler.start(self) }

    /// Asks the group to stop: the turn in progress ends after the request in hand. Safe from any thread.
    public func requestStop() {
        stopFlag.store(true, ordering: .releasing)
        for queue in queues { queue.requestStop() }
        waker.wake()
    }

    /// Runs one turn: processes the queues that are due, re-checks the rings (polling them for up to
    /// `pollNanoseconds` first), then waits up to `timeoutMilliseconds` (-1: until something happens)
    /// for kicks, completions, descriptors, timers or the waker, and delivers what happened.
    public func turn(timeoutMilliseconds: Int32 = -1) {
        processDueQueues()
        if isStopping { return }
        if settle() || members.contains(where: { $0.due }) {
            // Still busy: look at the descriptors and timers only now and then, so a busy ring is not
            // slowed by a system call per batch, and they still get their turn.
            busyTurns += 1
            if busyTurns % Self.busyTurnsPerWait != 0 { return }
            waitAndDeliver(timeoutMilliseconds: 0)
        } else {
            busyTurns = 0
            waitAndDeliver(timeoutMilliseconds: sleepTimeout(limit: timeoutMilliseconds))
        }
    }

    /// Lets the handler finish what it holds, then moves the last completions into the used rings and
    /// publishes them: the queues' final indices are then in `queues`.
    public func finish() {
        handler.stop(self)
        for queue in queues {
            queue.completionPort.drain(into: queue, spare: &spare.pointee)
            queue.publish()
        }
    }

    // MARK: Turns

    private func processDueQueues() {
        for position in members.indices where members[position].due {
            members[position].due = false
            let queue = members[position].queue
            queue.disableNotifications()
            queue.completionPort.drain(into: queue, spare: &spare.pointee)
            let result = handler.process(queue, in: self)
            queue.checkMemory()
            queue.publish()
            switch result {
            case .done:
                members[position].state = .settling
            case .blocked:
                _ = queue.enableNotifications()
                members[position].state = .idle
            case let .retry(milliseconds):
                members[position].state = .retrying
                members[position].retryAt = monotonicNanoseconds() &+ UInt64(max(0, milliseconds)) &* 1_000_000
            }
            if isStopping { return }
        }
    }

    /// Before sleeping: polls the rings for up to `pollNanoseconds` (a cross-core wake-up costs tens of
    /// microseconds, so a busy queue is cheaper to poll briefly than to sleep on; each round yields the
    /// CPU, so workers sharing a core poll in turn), then turns notifications back on and checks once
    /// more for buffers that raced with that. Returns whether a queue became due.
    private func settle() -> Bool {
        guard members.contains(where: { $0.state == .settling }) else { return false }
        if pollNanoseconds > 0 {
            let deadline = monotonicNanoseconds() &+ pollNanoseconds
            repeat {
                var found = false
                for position in members.indices where members[position].state != .retrying {
                    if members[position].queue.hasAvailable { members[position].due = true; found = true }
                }
                if found { return true }
                if handler.hasPendingWork {
                    for position in members.indices where members[position].state != .retrying { members[position].due = true }
                    return true
                }
                if isStopping { return false }
                sched_yield()
            } while monotonicNanoseconds() < deadline
        }
        var more = false
        for position in members.indices where members[position].state == .settling {
            members[position].state = .idle
            if members[position].queue.enableNotifications() {
                members[position].due = true
                more = true
            }
        }
        return more
    }

    /// How long the group may sleep: until the next timer, throttled queue or ring poll, within `limit`.
    private func sleepTimeout(limit: Int32) -> Int32 {
        var timeout = limit
        func atMost(_ milliseconds: Int32) { timeout = timeout < 0 ? milliseconds : min(timeout, milliseconds) }
        if hasPolledMember { atMost(Self.noKickPollMilliseconds) }
        let now = monotonicNanoseconds()
        func until(_ deadline: UInt64) -> Int32 {
            deadline <= now ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
        }
        for member in members where member.state == .retrying { atMost(until(member.retryAt)) }
        if let deadline = timers.nextDeadline { atMost(until(deadline)) }
        return timeout
    }

    /// Waits for events and delivers them: kicks and completions make their queue due; descriptors,
    /// timers and the waker go to the handler, and what it completed is published.
    private func waitAndDeliver(timeoutMilliseconds: Int32) {
        let count = epoll.wait(into: tokens, ready: readiness, capacity: Self.eventCapacity, timeoutMilliseconds: timeoutMilliseconds)
        var handled = false
        for i in 0..<count {
            let value = Int(truncatingIfNeeded: tokens[i] & 0xffff_ffff)
            switch Token(rawValue: tokens[i] >> 32) {
            case .kick:
                members[value].kick?.drain()
                members[value].due = true
            case .queueWake:
                members[value].queue.completionPort.wake.drain()
                members[value].due = true
            case .waker:
                waker.event.drain()
                if !isStopping { handler.handle(.wake, in: self); handled = true }
            case .watch:
                let id = UInt32(truncatingIfNeeded: value)
                if watches[id] != nil {
                    handler.handle(.ready(Watch(id: id), Readiness(rawValue: readiness[i])), in: self)
                    handled = true
                }
            case nil:
                break
            }
        }
        let now = monotonicNanoseconds()
        while !isStopping, let timer = timers.popExpired(now: now) {
            handler.handle(.timer(timer), in: self)
            handled = true
        }
        for position in members.indices {
            if members[position].kick == nil { members[position].due = true }
            if members[position].state == .retrying && members[position].retryAt <= now { members[position].due = true }
        }
        if handled {
            for queue in queues {
                queue.checkMemory()
                queue.publish()
            }
        }
    }
}
