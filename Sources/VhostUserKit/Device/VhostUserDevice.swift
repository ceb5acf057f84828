/// What a device implements to become a vhost-user daemon. The kit owns the protocol, guest memory,
/// the rings and the threads; a device says what it is and processes its queues.
public protocol VhostUserDevice: AnyObject, Sendable {
    /// The virtio device ID (virtio 1.2, section 5: 2 = block, 4 = entropy, ...).
    var virtioDeviceID: UInt32 { get }
    /// Device-specific feature bits (0-23, plus transport bits the device needs). The kit adds
    /// VERSION_1, INDIRECT_DESC, EVENT_IDX and VHOST_USER_F_PROTOCOL_FEATURES.
    var deviceFeatures: UInt64 { get }
    /// Exactly the number of queues the device has (GET_QUEUE_NUM).
    var queueCount: Int { get }
    /// The largest ring size each queue accepts (a power of two, at most 32768).
    var maxQueueSize: Int { get }
    /// Protocol features beyond the kit's default set (e.g. `.inflightShmfd`). CONFIG is added when
    /// `configSize` is non-zero.
    var extraProtocolFeatures: ProtocolFeatures { get }
    /// The size of the device's config space (0 for devices without one).
    var configSize: Int { get }
    /// What a queue does with a malformed chain (one it cannot translate or that breaks the rules).
    var malformedChainPolicy: MalformedChainPolicy { get }

    /// Reads `count` bytes of config space at `offset` (already bounds-checked against `configSize`).
    func readConfig(offset: Int, count: Int) -> [UInt8]
    /// Writes config space at `offset`; throw to refuse (e.g. a read-only field).
    func writeConfig(offset: Int, bytes: [UInt8]) throws
    /// Makes the handler that processes queue `index` while it runs, with the negotiated `features`.
    /// Called on the control thread; the handler is then used only by that queue's worker thread.
    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler
    /// The back-end channel is available (SET_BACKEND_REQ_FD), or gone (nil) when the front-end left.
    func backendChannelChanged(_ channel: BackendChannel?)
    /// The front-end reset the device or disconnected: forget per-connection state.
    func reset()
}

extension VhostUserDevice {
    public var extraProtocolFeatures: ProtocolFeatures { [] }
    public var configSize: Int { 0 }
    public var malformedChainPolicy: MalformedChainPolicy { .returnEmpty }
    public func readConfig(offset: Int, count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }
    public func writeConfig(offset: Int, bytes: [UInt8]) throws { throw DeviceError.readOnlyConfig }
    public func backendChannelChanged(_ channel: BackendChannel?) {}
    public func reset() {}
}

/// What a queue does with a chain it cannot process at all.
public enum MalformedChainPolicy: Sendable {
    /// Return it to the driver with a length of 0 and go on: right where an empty completion means
    /// "nothing for you" (entropy, input events).
    case returnEmpty
    /// Stop the queue (and signal the error eventfd): right where a completion without a written status
    /// would read as success to the driver (a block request's status byte).
    case stopQueue
}

/// Errors a device reports to the kit.
public enum DeviceError: Error, Equatable {
    case readOnlyConfig
}

/// What a queue handler wants after a processing pass.
public enum ProcessResult: Equatable, Sendable {
    /// It took every chain it could; the worker re-checks the ring before sleeping.
    case done
    /// It cannot go on until the next kick or completion (e.g. waiting for host data).
    case blocked
    /// It is throttled; call it again after this many milliseconds even without a kick.
    case retry(afterMilliseconds: Int32)
}

/// Processes one queue's requests on that queue's worker thread.
public protocol QueueHandler: AnyObject {
    /// Takes available chains from `queue` and completes them; the worker publishes and notifies.
    func process(_ queue: Virtqueue) -> ProcessResult
    /// The queue is stopping: finish or complete any request still held (asynchronous devices).
    func stop(_ queue: Virtqueue)
    /// Descriptors whose readiness should wake the worker, e.g. an io_uring completion eventfd.
    /// The worker only waits on them; `process` drains them.
    var wakeDescriptors: [Int32] { get }
    /// Whether the handler has work without a kick (e.g. finished I/O): checked while the worker polls.
    var hasPendingWork: Bool { get }
}

extension QueueHandler {
    public func stop(_ queue: Virtqueue) {}
    public var wakeDescriptors: [Int32] { [] }
    public var hasPendingWork: Bool { false }
}
