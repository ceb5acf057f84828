/// The control thread's record of one queue: everything the front-end configured.
final class QueueSlot {
    let index: Int
    var size: Int?
    var address: VringAddress?
    /// The next available index to process when the queue (re)starts.
    var base: UInt16 = 0
    /// SET_VRING_KICK arrived (with an fd, or with bit 8 asking for polling) and GET_VRING_BASE has
    /// not stopped the ring since.
    var started = false
    var kick: EventFD?
    var call: EventFD?
    var err: EventFD?
    /// SET_VRING_CALL installed a new call descriptor since the queue last started: the start signals
    /// it once if the ring has used elements (an interrupt may have been lost with the old one).
    var callReplaced = false
    /// SET_VRING_ENABLE state; only consulted when VHOST_USER_F_PROTOCOL_FEATURES was negotiated.
    var enabled = false
    /// The position of the queue's group in `Session.groups`.
    let group: Int

    init(index: Int, group: Int) {
        self.index = index
        self.group = group
    }
}

/// The control thread's record of one queue group: its members, and the worker that runs those of
/// them that may run. Any change to a member stops the worker; the next reconcile starts a new one
/// with the members that may run then.
final class GroupSlot {
    let members: [Int]
    var worker: GroupWorker?
    /// The members the current worker was started with (those that failed to start included), or nil
    /// after a stop: the group is started again only when this differs from what may run.
    var startedWith: [Int]?

    init(members: [Int]) { self.members = members }
}
