import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Runs one queue group of a device on the calling thread over fake guest memory: no daemon, no
/// socket, no worker thread and no timeouts. A test lays out chains on the driver side (`queues`),
/// calls `run()`, and reads the used rings: one request checked synchronously, through the same
/// `QueueGroup` turns a daemon's worker runs.
public final class GroupHarness {
    public let memory: FakeGuestMemory
    /// The driver side of each member queue, in device queue order.
    public let queues: [FakeQueue]
    /// The device side: the group, its queues and its handler.
    public let group: QueueGroup
    private var finished = false

    /// The turns `run()` takes at most: a handler that keeps finding work is a bug worth a failure.
    public static let maxTurns = 10_000

    /// Sets up the group `groupIndex` of `device` (every member), with rings of `queueSize` in `memory`
    /// and the negotiated `features` (default: everything the device and the kit offer), and starts it.
    public init(device: any VhostUserDevice, group groupIndex: Int = 0, queueSize: Int = 64, features: UInt64? = nil,
                memory: FakeGuestMemory? = nil, logger: Logger = Logger(label: "group-harness")) throws {
        let memory = try memory ?? FakeGuestMemory(size: 1 << 20)
        let features = features ?? (device.deviceFeatures | VirtioFeature.kitFeatures)
        let members = device.queueGroups[groupIndex].sorted()
        let regions = try memory.regions.map { try MappedRegion($0, file: OwnedDescriptor(dup(memory.file.rawValue))) }
        let guestMemory = try GuestMemory(regions: regions)
        var fakes: [FakeQueue] = []
        var queues: [Virtqueue] = []
        for index in members {
            let fake = try FakeQueue(index: index, size: queueSize, memory: memory)
            fake.eventIdx = features & VirtioFeature.ringEventIdx != 0
            fakes.append(fake)
            queues.append(try Virtqueue(index: index, size: queueSize, address: fake.address, base: 0, memory: guestMemory,
                                        features: features, call: fake.call, err: nil,
                                        completionPort: CompletionPort(wake: try EventFD()),
                                        malformedChainPolicy: device.malformedChainPolicy, logger: logger))
        }
        self.memory = memory
        self.queues = fakes
        group = try QueueGroup(queues: queues, handler: device.makeGroupHandler(queues: members, features: features), logger: logger)
        group.start()
    }

    /// The driver side of device queue `index`.
    public func queue(_ index: Int) -> FakeQueue { queues.first { $0.index == index }! }

    /// Turns the group until every available chain was taken and what was due is delivered (kicks are
    /// not needed: every member is processed each turn, as a ring without a kick eventfd is).
    public func run() {
        for _ in 0..<Self.maxTurns {
            group.turn(timeoutMilliseconds: 0)
            if !group.queues.contains(where: { $0.hasAvailable }) { break }
        }
        group.turn(timeoutMilliseconds: 0)
    }

    /// Turns the group once, waiting up to `milliseconds` for a descriptor, timer or wake-up.
    public func wait(milliseconds: Int32) { group.turn(timeoutMilliseconds: milliseconds) }

    /// Stops the group as a daemon does: the handler finishes what it holds, the last completions are
    /// published.
    public func finish() {
        guard !finished else { return }
        finished = true
        group.requestStop()
        group.finish()
    }

    deinit { finish() }
}
