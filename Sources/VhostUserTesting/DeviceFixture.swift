import VhostUserKit

/// `device` served by an in-process daemon, with a front-end connected and brought up: device, daemon,
/// front-end, guest memory and rings, ready for requests. The daemon runs for as long as the fixture,
/// its front-end or one of its queues is in use, and stops when the last of them goes.
public final class DeviceFixture<Device: VhostUserDevice>: ConnectedFrontend {
    public let device: Device
    public let daemon: InProcessDaemon

    /// Starts a daemon serving `device` (polling rings for `pollMicroseconds` before sleeping), connects
    /// and brings it up as `ConnectedFrontend` does with the same arguments (nil `profile`: nothing sent).
    public init(_ device: Device, profile: FrontendProfile? = .qemu, queueSizes: [Int] = [16],
                memorySize: Int = 4 << 20, regionCount: Int = 1, maskFeatures: UInt64 = 0,
                withBackendChannel: Bool = true, pollMicroseconds: UInt64 = 0) throws {
        self.device = device
        daemon = try InProcessDaemon(device: device, pollMicroseconds: pollMicroseconds)
        let frontend = try daemon.connect()
        frontend.daemon = daemon
        try super.init(frontend, profile: profile, queueSizes: queueSizes, memorySize: memorySize,
                       regionCount: regionCount, maskFeatures: maskFeatures, withBackendChannel: withBackendChannel)
    }
}
