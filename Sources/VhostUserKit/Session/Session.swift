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
    var backend: BackendChannel?
    var status: UInt64 = 0
    var inflight: InflightRegion?

    public init(device: any VhostUserDevice, socket: OwnedDescriptor, logger: Logger, pollNanoseconds: UInt64 = 0,
                onQueuesRunning: @escaping (Int) -> Void = { _ in }) {
        self.onQueuesRunning = onQueuesRunning
        self.device = device
        self.channel = MessageChannel(socket: socket)
        self.logger = logger
        self.pollNanoseconds = pollNanoseconds
        self.slots = (0..<device.queueCount).map(QueueSlot.init)
    }

    /// Virtio features offered in GET_FEATURES.
    var offeredFeatures: UInt64 { device.deviceFeatures | VirtioFeature.kitFeatures }

    /// Protocol features offered in GET_PROTOCOL_FEATURES.
    var offeredProtocolFeatures: ProtocolFeatures {
        var f = ProtocolFeatures.kitDefault.union(device.extraProtocolFeatures)
        if device.configSize > 0 { f.insert(.config) }
        return f
    }

    /// Serves requests until the front-end disconnects or `shutdown` is signalled, then stops every
    /// queue and releases the connection's memory and descriptors. Framing errors end the session.
    /// `shutdown` also cuts short a wait in the middle of a message or for room to send a reply, so a
    /// front-end that stalls cannot keep the daemon from stopping.
    public func run(shutdown: EventFD? = nil) throws(VhostUserError) {
        defer { close() }
        if let shutdown { channel = MessageChannel(socket: channel.socket, interrupt: shutdown.rawValue) }
        while true {
            if let shutdown {
                let ready = try VhostUserError.fromSystem { () throws(SystemError) in
                    try waitReadable([channel.socket.rawValue, shutdown.rawValue])
                }
                if ready == 1 { return }
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
            guard let request else { throw VhostUserError.unknownRequest(message.header.request) }
            let reply = try handle(request, message)
            reconcileQueues()
            if let reply {
                try channel.reply(to: message.header.request, payload: reply.payload, descriptors: reply.descriptors)
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

    /// Starts the queues that may now run and stops those that may not.
    func reconcileQueues() {
        for slot in slots {
            let run = shouldRun(slot)
            if run && slot.worker == nil { start(slot) }
            if !run && slot.worker != nil { stop(slot) }
        }
        let running = slots.count { $0.worker != nil }
        if running != runningQueues {
            runningQueues = running
            onQueuesRunning(running)
        }
    }

    private func start(_ slot: QueueSlot) {
        guard let size = slot.size, let address = slot.address else { return }
        do {
            let wake = try EventFD()
            let queue = try Virtqueue(index: slot.index, size: size, address: address, base: slot.base, memory: memory,
                                      features: features, call: slot.call, err: slot.err,
                                      completionPort: CompletionPort(wake: wake),
                                      inflightRegion: inflightRegion(queue: slot.index, size: size),
                                      malformedChainPolicy: device.malformedChainPolicy, logger: logger)
            if slot.callReplaced {
                queue.signalIfUsed()
                slot.callReplaced = false
            }
            let handler = device.makeQueueHandler(queue: slot.index, features: features)
            let worker = QueueWorker(queue: queue, wake: wake, handler: handler, kick: slot.kick, pollNanoseconds: pollNanoseconds)
            try worker.start()
            slot.worker = worker
            logger.debug("queue \(slot.index) started: size \(size), base \(slot.base), event-idx \(queue.eventIdx)")
        } catch {
            logger.error("queue \(slot.index) cannot start: \(error)")
            slot.err?.signal()
        }
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

    /// Stops a running queue and keeps its position, so it resumes where it left off.
    func stop(_ slot: QueueSlot) {
        guard let worker = slot.worker else { return }
        worker.stop()
        slot.base = worker.queue.nextAvail
        slot.worker = nil
        logger.debug("queue \(slot.index) stopped at \(slot.base)")
    }

    func stopAllQueues() { slots.forEach(stop) }

    /// Forgets the device's state (RESET_OWNER, RESET_DEVICE): rings, features, status, inflight.
    /// Protocol features and guest memory belong to the connection and stay: front-ends negotiate and
    /// share them once after connecting and re-initialise a reset device without repeating either
    /// (QEMU with CONFIGURE_MEM_SLOTS sends only the regions that changed since its last ADD_MEM_REG,
    /// none after a guest reset; libvhost-user's reset keeps them too).
    func resetDevice() {
        stopAllQueues()
        slots = (0..<device.queueCount).map(QueueSlot.init)
        features = 0
        status = 0
        inflight = nil
        device.reset()
    }

    /// The front-end left: the device's state and the connection's go.
    private func close() {
        resetDevice()
        protocolFeatures = []
        memory = .empty
        if backend != nil {
            backend = nil
            device.backendChannelChanged(nil)
        }
    }
}
