import Logging
import VhostUserKit

/// virtio-input (virtio 1.2, 5.8): the eventq (0) carries input events to the driver in
/// SYN_REPORT-delimited batches, the statusq (1) carries the driver's events back (LEDs, sounds,
/// force feedback). Both queues form one group: the events of the host source (an evdev device or
/// the control socket) wait in one bounded `PendingEvents` until eventq buffers take a whole batch.
public final class InputDevice: VhostUserDevice {
    public static let virtioID: UInt32 = 18
    public static let eventQueue = 0, statusQueue = 1
    /// The default bound of events held while the driver offers no buffers.
    public static let defaultBufferEvents = 4096
    /// The longest batch accepted (a keyboard's report is a few events, a 10-finger touch report ~70).
    public static let defaultMaxBatch = 256

    /// Where events come from and status events go.
    public enum Source: Sendable {
        /// A host evdev device (or anything that reads and writes `struct input_event`s the same way).
        case evdev(OwnedDescriptor)
        /// The control socket of a synthetic device.
        case control(ControlServer)
        /// Nothing: the device only answers config (tests, benchmarks push events with `inject`).
        case none
    }

    /// What a running group handler borrows and gives back when it stops (so events held while no
    /// driver runs are delivered to the next one).
    struct HostSide: Sendable {
        var pending: PendingEvents
        var source: Source
        /// The LED states the driver set through the statusq (bit n: LED n on).
        var leds: UInt32 = 0
    }

    public let description: InputDeviceDescription
    let config: Locked<InputConfigSpace>
    let host: Locked<HostSide?>

    public init(description: InputDeviceDescription, source: Source,
                bufferEvents: Int = InputDevice.defaultBufferEvents, maxBatch: Int = InputDevice.defaultMaxBatch) {
        self.description = description
        config = Locked(InputConfigSpace(description))
        host = Locked(HostSide(pending: PendingEvents(capacity: bufferEvents, maxBatch: maxBatch), source: source))
    }

    public var virtioDeviceID: UInt32 { Self.virtioID }
    public var deviceFeatures: UInt64 { 0 }
    public var queueCount: Int { 2 }
    public var maxQueueSize: Int { 1024 }
    public var configSize: Int { InputConfigSpace.size }
    public var queueGroups: [[Int]] { [[Self.eventQueue, Self.statusQueue]] }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        config.withLock { $0.read(offset: offset, count: count) }
    }

    public func writeConfig(offset: Int, bytes: [UInt8]) throws {
        try config.withLock { space throws(InputConfigError) in try space.write(offset: offset, bytes: bytes) }
    }

    public func reset() {
        config.withLock { $0 = InputConfigSpace(description) }
    }

    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        InputGroupHandler(device: self)
    }

    func takeHost() -> HostSide? { host.withLock { h in defer { h = nil }; return h } }
    func giveBack(_ side: HostSide) { host.withLock { $0 = side } }
}
