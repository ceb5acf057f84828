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
    /// Which queues share a worker thread and one handler: every queue in exactly one group. The
    /// default, a group per queue, suits devices whose queues share nothing (rng, blk); a device whose
    /// queues share state (a console port's queue pair, vsock's rx/tx/event) groups them.
    var queueGroups: [[Int]] { get }
    /// Makes the handler that serves a group while it runs: `queues` are the group's members that run
    /// now (a group restarts whenever one of them starts or stops), with the negotiated `features`.
    /// Called on the control thread; the handler is then used only by the group's worker thread. The
    /// default serves each queue with its own `makeQueueHandler` handler.
    func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler
    /// Makes the handler that processes queue `index` on its own, for the default `makeGroupHandler`.
    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler
    /// The back-end channel is available (SET_BACKEND_REQ_FD), or gone (nil) when the front-end left.
    func backendChannelChanged(_ channel: BackendChannel?)
    /// The front-end reset the device or disconnected: forget per-connection state.
    func reset()
    /// The daemon is about to exit, its front-ends served: let go of what others wait for (an image's
    /// lock, a server connection). Called once, on the main thread, with no queue running; also when
    /// start-up fails after the device was made.
    func close()
    /// The driver's status byte changed (SET_STATUS: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK...;
    /// 0 is a reset by the driver). Called on the control thread.
    func statusChanged(_ status: UInt8)
    /// A front-end request the kit does not serve itself: a device-specific one (e.g. NET_SET_MTU,
    /// GPU_SET_SOCKET) or a number the kit does not know. Return the reply for requests that have one
    /// (nil: none; an ack is sent when the front-end asked for one); throw to refuse it. The default
    /// refuses with `DeviceError.unsupportedRequest`. Called on the control thread.
    func handleFrontendRequest(_ request: UInt32, payload: [UInt8], descriptors: [OwnedDescriptor]) throws -> DeviceReply?
    /// The device's state beyond its rings, for migration and snapshots (DEVICE_STATE); nil when it
    /// has none (the default). Called on the control thread while every queue is stopped.
    func saveState() throws -> DeviceState?
    /// Applies a state that `saveState` made, maybe in another daemon or an older version: check all
    /// of it first (`DeviceState.expect`, `DeviceStateReader`) and throw without changing anything
    /// when any part is wrong. Called on the control thread while every queue is stopped.
    func loadState(_ state: DeviceState) throws
}

extension VhostUserDevice {
    public var extraProtocolFeatures: ProtocolFeatures { [] }
    public var configSize: Int { 0 }
    public var malformedChainPolicy: MalformedChainPolicy { .returnEmpty }
    public func readConfig(offset: Int, count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }
    public func writeConfig(offset: Int, bytes: [UInt8]) throws { throw DeviceError.readOnlyConfig }
    public func backendChannelChanged(_ channel: BackendChannel?) {}
    public func reset() {}
    public func close() {}
    public var queueGroups: [[Int]] { (0..<queueCount).map { [$0] } }
    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        QueueHandlerGroup(queues.map { ($0, makeQueueHandler(queue: $0, features: features)) })
    }
    public func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler {
        preconditionFailure("\(Self.self) implements neither makeGroupHandler nor makeQueueHandler")
    }
    public func statusChanged(_ status: UInt8) {}
    public func handleFrontendRequest(_ request: UInt32, payload: [UInt8], descriptors: [OwnedDescriptor]) throws -> DeviceReply? {
        throw DeviceError.unsupportedRequest
    }
    public func saveState() throws -> DeviceState? { nil }
    public func loadState(_ state: DeviceState) throws { throw DeviceStateError.unexpectedState }
}

/// A device's reply to a front-end request: payload bytes and descriptors to pass along.
public struct DeviceReply {
    public var payload: [UInt8]
    public var descriptors: [OwnedDescriptor]
    public init(payload: [UInt8], descriptors: [OwnedDescriptor] = []) {
        self.payload = payload
        self.descriptors = descriptors
    }
}

/// Errors a device reports to the kit.
public enum DeviceError: Error, Equatable {
    case readOnlyConfig
    /// The device does not serve this front-end request.
    case unsupportedRequest
}
