/// The control thread's record of one queue: everything the front-end configured, and the worker
/// that runs the queue while it may run.
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
    var worker: QueueWorker?

    init(index: Int) { self.index = index }
}
