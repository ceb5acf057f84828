import Logging

/// One front-end connection: reads requests, keeps the vring state machine and the memory table,
/// and starts and stops the queue workers. Runs on the daemon's control thread; the device sees only
/// `VhostUserDevice` calls and running queues.
public final class Session {
    let device: any VhostUserDevice
    private(set) var channel: MessageChannel
    let logger: Logger
    let pollNanoseconds: UInt64
    private let onQueuesRunning: (Int) -> Void
    private var runningQueues = 0

    var features: UInt64 = 0
    var protocolFeatures: ProtocolFeatures = []
    var memory = GuestMemory.empty
    var slots: [QueueSlot]
    var groups: [GroupSlot]
    var backend: BackendChannel?
    var status: UInt64 = 0
    var inflight: InflightRegion?
    /// The dirty log the front-end shared (SET_LOG_BASE); rings log into it while LOG_ALL is negotiated.
    var dirtyLog: DirtyLog?
    /// SET_LOG_FD's eventfd, signalled after logged used-ring updates.
    var logCall: EventFD?
    /// The DEVICE_STATE transfer between SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE.
    var stateTransfer: DeviceStateTransfer?

    public init(device: any VhostUserDevice, socket: OwnedDescriptor, logger: Logger, pollNanoseconds: UInt64 = 0,
                onQueuesRunning: @escaping (Int) -> Void = { _ in }) {
        self.onQueuesRunning = onQueuesRunning
        self.device = device
        self.channel = MessageChannel(socket: socket)
        self.logger = logger
        self.pollNanoseconds = pollNanoseconds
        self.groups = Self.checkedGroups(device).map(GroupSlot.init)
        self.slots = []
        self.slots = makeSlots()
    }

    /// The device's queue groups, checked: every queue in exactly one group.
    private static func checkedGroups(_ device: any VhostUserDevice) -> [[Int]] {
        let groups = device.queueGroups.map { $0.sorted() }
        precondition(groups.allSatisfy { !$0.isEmpty } && groups.flatMap { $0 }.sorted() == Array(0..<device.queueCount),
                     "\(type(of: device)).queueGroups must name each of its \(device.queueCount) queues exactly once: \(groups)")
        return groups
    }

    private func makeSlots() -> [QueueSlot] {
        var groupOf = [Int](repeating: 0, count: device.queueCount)
        for (position, group) in groups.enumerated() { for queue in group.members { groupOf[queue] = position } }
        return (0..<device.queueCount).map { QueueSlot(index: $0, group: groupOf[$0]) }
    }

    /// Virtio features offered in GET_FEATURES.
    var offeredFeatures: UInt64 { device.deviceFeatures | VirtioFeature.kitFeatures }

    /// Protocol features offered in GET_PROTOCOL_FEATURES.
    var offeredProtocolFeatures: ProtocolFeatures {
        var f = ProtocolFeatures.kitDefault.union(device.extraProtocolFeatures)
        if device.configSize > 0 { f.insert(.config) }
        return f
    }

    /// Serves requests (and sends what queue workers post on the back-end channel) until the front-end
    /// disconnects or `shutdown` is signalled, then stops every queue and releases the connection's
    /// memory and descriptors. Framing errors end the session.
    /// `shutdown` also cuts short a wait in the middle of a message or for room to send a reply, so a
    /// front-end that stalls cannot keep the daemon from stopping.
    public func run(shutdown: EventFD? = nil) throws(VhostUserError) {
        defer { close() }
        if let shutdown { channel = MessageChannel(socket: channel.socket, interrupt: shutdown.rawValue) }
        while true {
            var watched = [channel.socket.rawValue]
            if let shutdown { watched.append(shutdown.rawValue) }
            if let backend { watched.append(backend.posted.rawValue) }
            let ready = try VhostUserError.fromSystem { () throws(SystemError) in try waitReadable(watched) }
            if shutdown != nil && ready == 1 { return }
            if let backend, ready == watched.count - 1 {
                do { try backend.sendPosted() } catch { logger.error("back-end channel: \(error)") }
                continue
            }
            guard let message = try channel.receive() else { return }
            try dispatch(message)
        }
    }

    /// Handles one message and replies as the spec says: GET-style requests always get their payload;
    /// others get a u64 ack (0 = success) when NEED_REPLY is set and REPLY_ACK was negotiated.
    /// A refused request is logged once here, answered with a failure, and the session goes on.
    func dispatch(_ message: Message) throws(VhostUserError) {
        let request = message.request
        logger.trace("\(request.map { "\($0)" } ?? "request \(message.header.request)") size=\(message.header.size) fds=\(message.descriptors.count) flags=0x\(String(message.header.flags.rawValue, radix: 16))")
        let wantsAck = message.needsReply && protocolFeatures.contains(.replyAck)
        do throws(VhostUserError) {
            let reply = if let request { try handle(request, message) } else { try deviceRequest(message) }
            reconcileQueues()
            if let reply {
                try channel.reply(to: message.header.request, payload: reply.payload, descriptors: reply.descriptors.map(\.rawValue))
            } else if wantsAck {
                try channel.reply(to: message.header.request, payload: U64Payload(0).encoded())
            }
        } catch {
            if error.dropsConnection { throw error }
            logger.error("refused: \(error)")
            reconcileQueues()
            if let request, request.hasPayloadReply {
                try channel.reply(to: message.header.request, payload: failurePayload(for: request, message))
            } else if wantsAck {
                try channel.reply(to: message.header.request, payload: U64Payload(1).encoded())
            }
        }
    }

    /// The reply to a GET-style request that failed: the same shape, so the front-end does not hang,
    /// with values it recognises as a failure (a config reply without data, a zero payload).
    private func failurePayload(for request: FrontendRequest, _ message: Message) -> [UInt8] {
        switch request {
        case .getConfig:
            let asked = (try? ConfigPayload(decoding: message.payload, for: .getConfig))
            return ConfigPayload(offset: asked?.offset ?? 0, data: []).encoded()
        case .getVringBase:
            return VringState(index: 0, num: 0).encoded()
        case .getInflightFd:
            return InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 0, queueSize: 0).encoded()
        default:
            return U64Payload(UInt64.max).encoded()
        }
    }

    // MARK: Queues

    /// Whether the ring runs: VHOST_USER_F_PROTOCOL_FEATURES makes rings start disabled until
    /// SET_VRING_ENABLE; without it they run as soon as they are kicked.
    private func shouldRun(_ slot: QueueSlot) -> Bool {
        let enabled = features & VirtioFeature.protocolFeatures == 0 || slot.enabled
        return slot.started && enabled && slot.size != nil && slot.address != nil && !memory.isEmpty
    }

    /// Starts the groups whose queues may now run and restarts those whose running members change.
    func reconcileQueues() {
        for group in groups {
            let wanted = group.members.filter { shouldRun(slots[$0]) }
            if group.startedWith == wanted { continue }
            stop(group)
            group.startedWith = wanted
            if !wanted.isEmpty { start(group, members: wanted) }
        }
        let running = groups.reduce(0) { $0 + ($1.worker?.group.queues.count ?? 0) }
        if running != runningQueues {
            runningQueues = running
            onQueuesRunning(running)
        }
    }

    /// Starts a worker for the `members` of `group`; a member that cannot start is left out (and its
    /// error eventfd signalled).
    private func start(_ group: GroupSlot, members: [Int]) {
        var queues: [Virtqueue] = []
        var kicks: [EventFD?] = []
        for index in members {
            let slot = slots[index]
            guard let size = slot.size, let address = slot.address else { continue }
            do {
                let queue = try Virtqueue(index: index, size: size, address: address, base: slot.base, memory: memory,
                                          features: features, call: slot.call, err: slot.err,
                                          completionPort: CompletionPort(wake: try EventFD()),
                                          inflightRegion: inflightRegion(queue: index, size: size),
                                          malformedChainPolicy: device.malformedChainPolicy,
                                          dirtyLog: ringLog(queue: index, address: address), logCall: logCall, logger: logger)
                if slot.callReplaced {
                    queue.signalIfUsed()
                    slot.callReplaced = false
                }
                queues.append(queue)
                kicks.append(slot.kick)
                logger.debug("queue \(index) started: size \(size), base \(slot.base), event-idx \(queue.eventIdx)")
            } catch {
                logger.error("queue \(index) cannot start: \(error)")
                slot.err?.signal()
            }
        }
        guard !queues.isEmpty else { return }
        let handler = device.makeGroupHandler(queues: queues.map(\.index), features: features)
        do {
            let worker = GroupWorker(group: try QueueGroup(queues: queues, kicks: kicks, handler: handler,
                                                           pollNanoseconds: pollNanoseconds, logger: logger))
            worker.start()
            group.worker = worker
        } catch {
            logger.error("queues \(queues.map(\.index)) cannot start: \(error)")
            for queue in queues { slots[queue.index].err?.signal() }
        }
    }

    /// The dirty log queue `index` writes into: while LOG_ALL is negotiated and its SET_VRING_ADDR asked
    /// for logging (VHOST_VRING_F_LOG). Nil otherwise.
    private func ringLog(queue index: Int, address: VringAddress) -> DirtyLog? {
        guard features & VirtioFeature.logAll != 0, address.flags & VringAddress.logFlag != 0 else { return nil }
        if dirtyLog == nil { logger.warning("queue \(index): logging asked for before SET_LOG_BASE; its writes are not logged") }
        return dirtyLog
    }

    /// Queue `index`'s part of the inflight region, when the device tracks in-flight requests and the
    /// front-end shared a region laid out for this queue size.
    private func inflightRegion(queue index: Int, size: Int) -> UnsafeMutableRawPointer? {
        guard let inflight, protocolFeatures.contains(.inflightShmfd) else { return nil }
        let d = inflight.description
        let stride = InflightRegion.queueRegionSize(queueSize: Int(d.queueSize))
        guard index < Int(d.queueCount), Int(d.queueSize) == size, (index + 1) * stride <= Int(d.mmapSize) else {
            logger.warning("queue \(index): the inflight region (\(d.queueCount) queues of \(d.queueSize)) does not fit a ring of \(size); not tracking")
            return nil
        }
        return inflight.base + index * stride
    }

    /// Stops the queue's group, keeping every member's position so it resumes where it left off; the
    /// next reconcile restarts the members that may still run.
    func stop(_ slot: QueueSlot) { stop(groups[slot.group]) }

    private func stop(_ group: GroupSlot) {
        group.startedWith = nil
        guard let worker = group.worker else { return }
        worker.stop()
        for queue in worker.group.queues {
            slots[queue.index].base = queue.nextAvail
            logger.debug("queue \(queue.index) stopped at \(queue.nextAvail)")
        }
        group.worker = nil
    }

    func stopAllQueues() { groups.forEach(stop) }

    /// Forgets the device's state (RESET_OWNER, RESET_DEVICE): rings, features, status, inflight.
    /// Protocol features and guest memory belong to the connection and stay: front-ends negotiate and
    /// share them once after connecting and re-initialise a reset device without repeating either
    /// (QEMU with CONFIGURE_MEM_SLOTS sends only the regions that changed since its last ADD_MEM_REG,
    /// none after a guest reset; libvhost-user's reset keeps them too).
    func resetDevice() {
        stopAllQueues()
        slots = makeSlots()
        features = 0
        status = 0
        inflight = nil
        stateTransfer?.cancel()
        _ = stateTransfer?.finish()
        stateTransfer = nil
        device.reset()
    }

    /// The front-end left: the device's state and the connection's go.
    private func close() {
        resetDevice()
        protocolFeatures = []
        memory = .empty
        dirtyLog = nil
        logCall = nil
        if backend != nil {
            backend = nil
            device.backendChannelChanged(nil)
        }
    }
}
