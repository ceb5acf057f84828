/// What a handler wants for a queue after processing it.
public enum ProcessResult: Equatable, Sendable {
    /// It took every chain it could; the worker re-checks the ring before sleeping.
    case done
    /// It cannot go on until the next kick, completion or event (e.g. waiting for host data).
    case blocked
    /// It is throttled; process the queue again after this many milliseconds even without a kick.
    case retry(afterMilliseconds: Int32)
}

/// Serves a group of queues on the group's worker thread: the requests of every member queue and the
/// events of the host descriptors and timers it set up. State shared by the group's queues lives here
/// and needs no lock: every call comes from the one worker thread.
public protocol GroupHandler: AnyObject {
    /// The group started (or restarted with other members): set up watches and timers here.
    func start(_ group: QueueGroup)
    /// Takes available chains from `queue`, a running member of `group`, and completes them. Called
    /// after a kick on that queue, a completion through its port, `group.wakeQueue`, and at start.
    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult
    /// A watched descriptor is ready, a timer fired or the waker was signalled. Completions made here
    /// are published when it returns.
    func handle(_ event: GroupEvent, in group: QueueGroup)
    /// The group is stopping: finish or complete any request still held. Watches and timers go with the
    /// group; state that must outlive a restart belongs to the device.
    func stop(_ group: QueueGroup)
    /// Whether there is work without a kick (e.g. finished I/O): checked while the worker polls.
    var hasPendingWork: Bool { get }
}

extension GroupHandler {
    public func start(_ group: QueueGroup) {}
    public func handle(_ event: GroupEvent, in group: QueueGroup) {}
    public func stop(_ group: QueueGroup) {}
    public var hasPendingWork: Bool { false }
}

/// What woke a group's handler, besides a queue to process.
public enum GroupEvent: Equatable, Sendable {
    /// A descriptor watched with `QueueGroup.watch` is ready.
    case ready(Watch, Readiness)
    /// A timer set with `QueueGroup.schedule` reached its deadline (once; it is gone now).
    case timer(GroupTimer)
    /// Another thread called the group's `GroupWaker.wake()`.
    case wake
}

/// A host descriptor a group watches.
public struct Watch: Hashable, Sendable {
    let id: UInt32
}

/// A one-shot timer of a group.
public struct GroupTimer: Hashable, Sendable {
    let id: UInt32
}

/// Processes one queue on its worker: the handler of a device whose queues share nothing. A device
/// that makes these gets one group per queue by default, or several of them on one worker
/// (`QueueHandlerGroup`) when it groups queues only to save threads.
public protocol QueueHandler: AnyObject {
    /// Takes available chains from `queue` and completes them; the worker publishes and notifies.
    func process(_ queue: Virtqueue) -> ProcessResult
    /// The queue is stopping: finish or complete any request still held (asynchronous devices).
    func stop(_ queue: Virtqueue)
    /// Descriptors whose readiness should wake the worker to process this queue, e.g. an io_uring
    /// completion eventfd. The worker only waits on them; `process` drains them.
    var wakeDescriptors: [Int32] { get }
    /// Whether the handler has work without a kick (e.g. finished I/O): checked while the worker polls.
    var hasPendingWork: Bool { get }
}

extension QueueHandler {
    public func stop(_ queue: Virtqueue) {}
    public var wakeDescriptors: [Int32] { [] }
    public var hasPendingWork: Bool { false }
}
