import Logging
import VhostUserKit

/// virtio-i2c (virtio 1.2, 5.19): one I2C bus with the clients the command line puts on it, simulated
/// or passed through from host adapters. One request queue; no configuration space.
public final class I2CDevice: VhostUserDevice {
    public let bus: I2CBus
    private let logger: Logger
    /// Every address the guest may reach.
    public let reachableAddresses: [I2CAddress]

    public init(bus: I2CBus, logger: Logger = Logger(label: "vhost-user-i2c")) {
        reachableAddresses = bus.reachableAddresses
        self.bus = bus
        self.logger = logger
    }

    public var virtioDeviceID: UInt32 { VirtioI2C.deviceID }
    public var deviceFeatures: UInt64 { VirtioI2C.Feature.zeroLengthRequest }
    public var queueCount: Int { 1 }
    public var maxQueueSize: Int { 1024 }

    public func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler {
        I2CRequestQueue(bus: bus, features: features, logger: logger)
    }
}
