import VhostUserKit

/// A front-end connected to a daemon, with guest memory and rings of its own, brought up in a VMM's
/// message order: the state most tests start from, made in one line so a test writes only what it checks.
public class ConnectedFrontend {
    public let frontend: FakeFrontend
    public let memory: FakeGuestMemory
    /// The rings, one per entry of `queueSizes` (queue i has index i), laid out in region 0 of `memory`.
    public let queues: [FakeQueue]
    /// The back-end channel's front-end end, when the bring-up set one up.
    public let backendSocket: OwnedDescriptor?

    /// Queue 0.
    public var queue: FakeQueue { queues[0] }
    /// The virtio features the bring-up negotiated (0 before one).
    public var features: UInt64 { frontend.features }

    /// Brings the daemon behind `frontend` up as `profile` does (accepting every feature offered but
    /// `maskFeatures`) on `memorySize` bytes of guest memory split into `regionCount` equal regions,
    /// and returns once the daemon has handled the whole bring-up.
    /// A nil `profile` sends nothing: memory and rings are laid out and the bring-up is the test's.
    public init(_ frontend: FakeFrontend, profile: FrontendProfile? = .qemu, queueSizes: [Int] = [16],
                memorySize: Int = 4 << 20, regionCount: Int = 1, maskFeatures: UInt64 = 0,
                withBackendChannel: Bool = true) throws {
        self.frontend = frontend
        let memory = try FakeGuestMemory(size: memorySize, regionCount: regionCount)
        self.memory = memory
        queues = try queueSizes.enumerated().map { try FakeQueue(index: $0.offset, size: $0.element, memory: memory) }
        for q in queues { q.connection = frontend }
        if let profile {
            let setup = try frontend.setUp(profile, memory: memory, queues: queues, maskFeatures: maskFeatures,
                                           withBackendChannel: withBackendChannel)
            backendSocket = setup.backendSocket
            // Front-ends do not wait for the last ring messages (SET_VRING_ENABLE, SET_STATUS) to be
            // handled, and a daemon may still be starting queues when the first request arrives (on a
            // busy machine, long after: its session thread lags its workers). A test's requests must
            // find the device brought up, so one round trip ensures the daemon has read everything.
            _ = try frontend.getFeatures()
        } else {
            backendSocket = nil
        }
    }

    /// The same, connecting to the daemon listening on `socketPath` (a daemon process).
    public convenience init(socketPath: String, profile: FrontendProfile? = .qemu, queueSizes: [Int] = [16],
                            memorySize: Int = 4 << 20, regionCount: Int = 1, maskFeatures: UInt64 = 0,
                            withBackendChannel: Bool = true) throws {
        try self.init(try FakeFrontend.connect(to: socketPath), profile: profile, queueSizes: queueSizes,
                      memorySize: memorySize, regionCount: regionCount, maskFeatures: maskFeatures,
                      withBackendChannel: withBackendChannel)
    }
}
