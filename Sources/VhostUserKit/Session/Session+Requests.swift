/// A reply payload with the descriptors to pass along.
struct Reply {
    var payload: [UInt8]
    /// Descriptors to attach; the owners keep them open until the reply is sent.
    var descriptors: [OwnedDescriptor] = []
    init(_ payload: some FixedPayload) { self.payload = payload.encoded() }
    init(payload: [UInt8], descriptors: [OwnedDescriptor] = []) { self.payload = payload; self.descriptors = descriptors }
}

/// One typed handler per front-end request. Each checks the payload size and descriptor count
/// before decoding anything; a handler that throws changes no state.
extension Session {
    func handle(_ request: FrontendRequest, _ m: Message) throws(VhostUserError) -> Reply? {
        switch request {
        case .getFeatures:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(offeredFeatures))

        case .setFeatures:
            let value = try U64Payload(decoding: m.payload, for: request).value
            try expect(m, descriptors: 0)
            if value & ~offeredFeatures != 0 {
                throw .invalidRequest(request, "features 0x\(String(value & ~offeredFeatures, radix: 16)) were not offered")
            }
            stopAllQueues()
            features = value
            return nil

        case .setOwner:
            try expect(m, descriptors: 0, payload: 0)
            return nil

        case .resetOwner, .resetDevice:
            try expect(m, descriptors: 0)
            resetDevice()
            return nil

        case .getProtocolFeatures:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(offeredProtocolFeatures.rawValue))

        case .setProtocolFeatures:
            let value = ProtocolFeatures(rawValue: try U64Payload(decoding: m.payload, for: request).value)
            try expect(m, descriptors: 0)
            guard offeredProtocolFeatures.isSuperset(of: value) else {
                throw .invalidRequest(request, "protocol features \(value.subtracting(offeredProtocolFeatures)) were not offered")
            }
            protocolFeatures = value
            return nil

        case .getQueueNum:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(UInt64(device.queueCount)))

        case .getMaxMemSlots:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(UInt64(GuestMemory.maxSlots)))

        case .setMemTable:
            let table = try MemoryTable(decoding: m.payload)
            try expect(m, descriptors: table.regions.count)
            let newMemory = try memoryChange(request) { () throws(MemoryError) in
                var mapped: [MappedRegion] = []
                for (region, file) in zip(table.regions, m.descriptors) {
                    mapped.append(try MappedRegion(region, file: file))
                }
                return try GuestMemory(regions: mapped)
            }
            stopAllQueues()
            memory = newMemory
            return nil

        case .addMemReg:
            let region = try SingleMemoryRegion(decoding: m.payload, for: request).region
            try expect(m, descriptors: 1)
            let newMemory = try memoryChange(request) { () throws(MemoryError) in
                try memory.adding(try MappedRegion(region, file: m.descriptors[0]))
            }
            stopAllQueues()
            memory = newMemory
            return nil

        case .remMemReg:
            let region = try SingleMemoryRegion(decoding: m.payload, for: request).region
            // Front-ends differ here: some attach the region's fd again, some do not.
            guard m.descriptors.count <= 1 else { throw .badFileDescriptorCount(request: request, expected: 0, actual: m.descriptors.count) }
            let newMemory = try memoryChange(request) { () throws(MemoryError) in try memory.removing(region) }
            stopAllQueues()
            memory = newMemory
            return nil

        case .setVringNum:
            let state = try VringState(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(state.index, request)
            guard SplitRingLayout.isValid(size: Int(state.num), limit: device.maxQueueSize) else {
                throw .invalidRequest(request, "queue \(state.index): size \(state.num) is not a power of two from 1 to \(device.maxQueueSize)")
            }
            stop(slot)
            slot.size = Int(state.num)
            return nil

        case .setVringAddr:
            let address = try VringAddress(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(address.index, request)
            if let size = slot.size, !memory.isEmpty {
                try checkRing(address, size: size)
            }
            stop(slot)
            slot.address = address
            return nil

        case .setVringBase:
            let state = try VringState(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(state.index, request)
            guard state.num <= UInt16.max else { throw .invalidRequest(request, "base \(state.num) is not a split-ring index") }
            stop(slot)
            slot.base = UInt16(state.num)
            return nil

        case .getVringBase:
            let state = try VringState(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(state.index, request)
            stop(slot)
            slot.started = false
            slot.kick = nil
            return Reply(VringState(index: state.index, num: UInt32(slot.base)))

        case .setVringKick, .setVringCall, .setVringErr:
            let file = VringFile(try U64Payload(decoding: m.payload, for: request))
            try expect(m, descriptors: file.hasFile ? 1 : 0)
            let slot = try queue(file.index, request)
            let event = file.hasFile ? EventFD(adopting: m.descriptors[0]) : nil
            stop(slot)
            switch request {
            case .setVringKick: slot.kick = event; slot.started = true
            case .setVringCall: slot.call = event; slot.callReplaced = event != nil
            default: slot.err = event
            }
            return nil

        case .setVringEnable:
            let state = try VringState(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(state.index, request)
            guard state.num <= 1 else { throw .invalidRequest(request, "enable value \(state.num)") }
            slot.enabled = state.num == 1
            return nil

        case .vringKick:
            let state = try VringState(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            let slot = try queue(state.index, request)
            groups[slot.group].worker?.notify(queue: slot.index)
            return nil

        case .setBackendReqFd:
            try expect(m, descriptors: 1, payload: 0)
            let channel = try VhostUserError.fromSystem { () throws(SystemError) in try BackendChannel(socket: m.descriptors[0]) }
            backend = channel
            device.backendChannelChanged(channel)
            return nil

        case .getConfig:
            let config = try ConfigPayload(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            try checkConfigRange(config, request)
            let data = device.readConfig(offset: Int(config.offset), count: config.data.count)
            return Reply(payload: ConfigPayload(offset: config.offset, flags: config.flags, data: data).encoded())

        case .setConfig:
            let config = try ConfigPayload(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            try checkConfigRange(config, request)
            do {
                try device.writeConfig(offset: Int(config.offset), bytes: config.data)
            } catch {
                throw .invalidRequest(request, "the device refused the write: \(error)")
            }
            return nil

        case .getInflightFd:
            let asked = try InflightDescription(decoding: m.payload, for: request)
            try expect(m, descriptors: 0)
            guard device.extraProtocolFeatures.contains(.inflightShmfd) else { throw .unsupportedRequest(request) }
            guard Int(asked.queueCount) <= device.queueCount, asked.queueCount > 0,
                  SplitRingLayout.isValid(size: Int(asked.queueSize), limit: device.maxQueueSize) else {
                throw .invalidRequest(request, "\(asked.queueCount) queues of size \(asked.queueSize)")
            }
            let region = try InflightRegion.create(queueCount: Int(asked.queueCount), queueSize: Int(asked.queueSize))
            // Running workers write to the current region: stop them before it is unmapped.
            stopAllQueues()
            inflight = region
            return Reply(payload: region.description.encoded(), descriptors: [region.file])

        case .setInflightFd:
            let description = try InflightDescription(decoding: m.payload, for: request)
            try expect(m, descriptors: 1)
            guard device.extraProtocolFeatures.contains(.inflightShmfd) else { throw .unsupportedRequest(request) }
            let region = try InflightRegion(description, file: m.descriptors[0])
            stopAllQueues()
            inflight = region
            return nil

        case .setStatus:
            let value = try U64Payload(decoding: m.payload, for: request).value
            try expect(m, descriptors: 0)
            guard value <= 0xff else { throw .invalidRequest(request, "status 0x\(String(value, radix: 16))") }
            status = value
            device.statusChanged(UInt8(value))
            return nil

        case .getStatus:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(status))

        case .setLogBase:
            let description = try LogDescription(decoding: m.payload, for: request)
            try expect(m, descriptors: 1)
            guard protocolFeatures.contains(.logShmfd) else { throw .invalidRequest(request, "LOG_SHMFD was not negotiated") }
            let log = try DirtyLog(description, file: m.descriptors[0])
            // Running workers write to the current log: they stop (and drop it) before it is replaced.
            stopAllQueues()
            dirtyLog = log
            logger.info("dirty log: \(description.mmapSize) bytes (guest addresses up to \((description.mmapSize * 8 * DirtyLog.pageSize) >> 20) MiB)")
            // QEMU waits for this reply whatever NEED_REPLY says (vhost-user spec: "the back-end must reply").
            return Reply(U64Payload(0))

        case .setLogFd:
            try expect(m, descriptors: 1)
            stopAllQueues()
            logCall = EventFD(adopting: m.descriptors[0])
            return nil

        case .setDeviceStateFd:
            let parameters = try DeviceStateTransferParameters(decoding: m.payload, for: request)
            try expect(m, descriptors: 1)
            return try startStateTransfer(parameters, pipe: m.descriptors[0])

        case .checkDeviceState:
            try expect(m, descriptors: 0, payload: 0)
            return Reply(U64Payload(finishStateTransfer() ? 0 : 1))

        case .sendRarp, .netSetMtu, .iotlbMsg, .setVringEndian, .createCryptoSession,
             .closeCryptoSession, .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket,
             .getSharedObject, .getShmemConfig:
            return try deviceRequest(m)
        }
    }

    /// Offers a request the kit does not serve to the device (device-specific requests, unknown numbers).
    func deviceRequest(_ m: Message) throws(VhostUserError) -> Reply? {
        let reply: DeviceReply?
        do {
            reply = try device.handleFrontendRequest(m.header.request, payload: m.payload, descriptors: m.descriptors)
        } catch DeviceError.unsupportedRequest {
            if let request = m.request { throw .unsupportedRequest(request) }
            throw .unknownRequest(m.header.request)
        } catch {
            throw .deviceRefused(request: m.header.request, "\(error)")
        }
        return reply.map { Reply(payload: $0.payload, descriptors: $0.descriptors) }
    }

    // MARK: Checks

    private func expect(_ m: Message, descriptors: Int, payload: Int? = nil) throws(VhostUserError) {
        guard let request = m.request else { return }
        if let payload, m.payload.count != payload {
            throw .badPayloadSize(request: request, expected: payload, actual: m.payload.count)
        }
        guard m.descriptors.count == descriptors else {
            throw .badFileDescriptorCount(request: request, expected: descriptors, actual: m.descriptors.count)
        }
    }

    /// Builds a new memory table; a refused region refuses the request (the session goes on).
    private func memoryChange(_ request: FrontendRequest, _ body: () throws(MemoryError) -> GuestMemory) throws(VhostUserError) -> GuestMemory {
        do { return try body() } catch { throw .invalidRequest(request, error.description) }
    }

    private func queue(_ index: UInt32, _ request: FrontendRequest) throws(VhostUserError) -> QueueSlot {
        guard index < slots.count else { throw .invalidRequest(request, "queue \(index) does not exist (the device has \(slots.count))") }
        return slots[Int(index)]
    }

    private func checkConfigRange(_ config: ConfigPayload, _ request: FrontendRequest) throws(VhostUserError) {
        guard device.configSize > 0 else { throw .unsupportedRequest(request) }
        guard Int(config.offset) + config.data.count <= device.configSize else {
            throw .invalidRequest(request, "bytes \(config.offset)..<\(Int(config.offset) + config.data.count) are outside the \(device.configSize)-byte config space")
        }
    }

    /// Checks that all three parts of a ring lie in guest memory, aligned (the worker checks again on start).
    private func checkRing(_ address: VringAddress, size: Int) throws(VhostUserError) {
        do throws(VirtqueueError) {
            _ = try RingLocation(address, size: size, in: memory)
        } catch {
            throw .invalidRequest(.setVringAddr, "queue \(address.index): \(error)")
        }
    }
}
