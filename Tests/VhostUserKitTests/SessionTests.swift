import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

extension KitTests {
@Suite("session requests")
struct SessionTests {
    // MARK: Bring-up in every ordering

    @Test("every front-end ordering brings every queue up and gets requests served", arguments: FrontendProfile.allCases)
    func servedInEveryOrdering(profile: FrontendProfile) throws {
        let device = LoopbackDevice(queueCount: 3)
        let d = try DeviceFixture(device, profile: profile, queueSizes: [64, 128, 256], regionCount: 2)
        #expect(d.features & VirtioFeature.protocolFeatures != 0)
        for q in d.queues {
            for i in 0..<3 { try expectEcho(q, pattern(100 + 50 * i, seed: 10 * q.index + i)) }
        }
        #expect((0..<3).map { device.served(queue: $0) } == [3, 3, 3])
    }

    // MARK: Features

    @Test("GET_FEATURES offers the device's bits plus the kit's; SET_FEATURES refuses bits not offered")
    func features() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        let offered = try f.getFeatures()
        #expect(offered == LoopbackDevice.deviceFeatureBit | VirtioFeature.kitFeatures)
        try f.setProtocolFeatures([.replyAck])
        try expectNack(f, .setFeatures, U64Payload(offered | VirtioFeature.ringPacked).encoded())
        try expectNack(f, .setFeatures, [1, 2, 3])
        try expectAck(f, .setFeatures, U64Payload(offered).encoded())
        try expectAck(f, .setFeatures, U64Payload(VirtioFeature.version1).encoded())
    }

    @Test("GET_PROTOCOL_FEATURES offers the kit's set plus CONFIG and INFLIGHT_SHMFD; SET refuses the rest")
    func protocolFeatures() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        let offered = try f.getProtocolFeatures()
        #expect(offered == ProtocolFeatures.kitDefault.union([.config, .inflightShmfd]))
        try f.setProtocolFeatures([.replyAck])
        try expectNack(f, .setProtocolFeatures, U64Payload(ProtocolFeatures([.replyAck, .pagefault]).rawValue).encoded())
        try expectAck(f, .setProtocolFeatures, U64Payload(offered.rawValue).encoded())

        // A device without config space or inflight support offers neither.
        let plain = try DeviceFixture(LoopbackDevice(configSize: 0, inflight: false), profile: nil).frontend
        #expect(try plain.getProtocolFeatures() == ProtocolFeatures.kitDefault)
    }

    // MARK: Ownership and reset

    @Test("SET_OWNER is acked and refuses a payload")
    func setOwner() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck])
        try expectAck(f, .setOwner)
        try expectNack(f, .setOwner, [0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("RESET_OWNER stops the rings and forgets the set-up; the same connection can set up again",
          arguments: FrontendProfile.allCases)
    func resetOwner(profile: FrontendProfile) throws {
        try checkReset(.resetOwner, profile: profile)
    }

    @Test("RESET_DEVICE stops the rings, resets the device; the same connection can set up again",
          arguments: FrontendProfile.allCases)
    func resetDevice(profile: FrontendProfile) throws {
        try checkReset(.resetDevice, profile: profile)
    }

    private func checkReset(_ request: FrontendRequest, profile: FrontendProfile) throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: profile, queueSizes: [32], regionCount: 2)
        let f = d.frontend, memory = d.memory, old = d.queue
        try expectEcho(old)
        try f.setStatus(0x0f)
        _ = try f.command(request)
        try barrier(f)
        #expect(device.resets == 1)
        #expect(try f.getStatus() == 0)
        // The old ring no longer runs.
        _ = submitEcho(old, pattern(10))
        old.notifyDevice()
        try barrier(f)
        expectNothingUsed(old)
        // Set up again on the same connection, as QEMU does after a guest reset.
        let q = try f.setUp(profile, memory: memory, queueSizes: [32]).queues[0]
        try expectEcho(q, pattern(77, seed: 5))
    }

    @Test("RESET_DEVICE keeps the negotiated protocol features: a re-initialisation without renegotiating is acked")
    func resetDeviceKeepsProtocolFeatures() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q])
        try expectEcho(q)
        try expectAck(f, .resetDevice)
        // QEMU's vhost_dev_start after a guest reset: no GET/SET_PROTOCOL_FEATURES, NEED_REPLY where it wants acks.
        let q2 = try FakeQueue(index: 0, size: 32, memory: memory)
        try expectAck(f, .setFeatures, U64Payload(f.features).encoded())
        try expectAck(f, .setMemTable, MemoryTable(regions: memory.regions).encoded(), descriptors: [memory.file.rawValue])
        try expectRingStartAcked(f, q2, features: f.features)
        try expectEcho(q2)
        #expect(try f.getConfig(offset: 0, count: 4).data == [0xa0, 0xa1, 0xa2, 0xa3])
    }

    @Test("RESET_DEVICE keeps guest memory: QEMU with CONFIGURE_MEM_SLOTS restarts the rings without re-adding regions")
    func resetDeviceKeepsMemory() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUpWithRegions(f, memory: memory, q: q, regions: [0])
        try expectEcho(q)
        try expectAck(f, .resetDevice)
        // What QEMU 10 sends after the guest resets the device: its shadow copy of the regions
        // says the back-end has them, so no ADD_MEM_REG.
        let q2 = try FakeQueue(index: 0, size: 32, memory: memory)
        try expectAck(f, .setFeatures, U64Payload(f.features).encoded())
        try expectRingStartAcked(f, q2, features: f.features)
        try expectEcho(q2)
    }

    // MARK: Memory

    @Test("a second SET_MEM_TABLE replaces guest memory; running rings restart on it and keep serving")
    func setMemTableReplaces() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .crosvm, queueSizes: [64])
        let f = d.frontend, memory = d.memory, q = d.queue
        try expectEcho(q)
        // The same RAM, now described as two halves: a buffer across the split needs both.
        let whole = memory.regions[0], half = whole.size / 2
        let halves = [MemoryRegionDescription(guestPhysicalAddress: whole.guestPhysicalAddress, size: half, userAddress: whole.userAddress, mmapOffset: 0),
                      MemoryRegionDescription(guestPhysicalAddress: whole.guestPhysicalAddress + half, size: half, userAddress: whole.userAddress + half, mmapOffset: half)]
        try expectAck(f, .setMemTable, MemoryTable(regions: halves).encoded(), descriptors: [memory.file.rawValue, memory.file.rawValue])
        let split = whole.guestPhysicalAddress + half
        let payload = pattern(256, seed: 3)
        memory.write(payload, at: split - 128)
        let out = memory.allocate(256)
        let head = q.submit([.readable(split - 128, 256), .writable(out, 256)])
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(head, 256)])
        #expect(memory.read(out, count: 256) == payload)
        #expect(q.publishedUsedIndex == 2)
    }

    @Test("GET_MAX_MEM_SLOTS is 32, and ADD_MEM_REG beyond it is refused")
    func maxMemSlots() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [], memorySize: 33 * 4096)
        let f = d.frontend, memory = d.memory
        #expect(try f.getMaxMemSlots() == 32)
        try f.setProtocolFeatures(try f.getProtocolFeatures())
        for i in 0..<33 {
            let region = MemoryRegionDescription(guestPhysicalAddress: UInt64(i) * 0x10_0000, size: 4096,
                                                 userAddress: 0x7000_0000 + UInt64(i) * 4096, mmapOffset: UInt64(i) * 4096)
            let value = try ack(f, .addMemReg, SingleMemoryRegion(region).encoded(), descriptors: [memory.file.rawValue])
            #expect(value == (i < 32 ? 0 : 1), "region \(i)")
        }
    }

    @Test("ADD_MEM_REG after the rings run: buffers in the new region are served at once")
    func addMemRegAfterRingsRun() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [64], memorySize: 3 << 20, regionCount: 3)
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUpWithRegions(f, memory: memory, q: q, regions: [0])
        try expectEcho(q, region: 0)
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[1]).encoded(), descriptors: [memory.file.rawValue])
        try expectEcho(q, region: 1)
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[2]).encoded(), descriptors: [memory.file.rawValue])
        try expectEcho(q, region: 2)
        try expectEcho(q, region: 1)
    }

    @Test("REM_MEM_REG: a request whose buffer is in the removed region fails as malformed; the rest still work")
    func remMemReg() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: .libblkio, queueSizes: [64], memorySize: 3 << 20, regionCount: 3)
        let f = d.frontend, memory = d.memory
        let q = d.queue
        try expectEcho(q, region: 1)
        try expectEcho(q, region: 2)
        // QEMU attaches the region's fd to REM_MEM_REG, libblkio does not: both are accepted.
        try expectAck(f, .remMemReg, SingleMemoryRegion(memory.regions[1]).encoded(), descriptors: [memory.file.rawValue])
        try expectAck(f, .remMemReg, SingleMemoryRegion(memory.regions[2]).encoded())
        // Removing it twice is refused.
        try expectNack(f, .remMemReg, SingleMemoryRegion(memory.regions[2]).encoded())
        let served = device.served()
        let lost = submitEcho(q, pattern(64, seed: 1), region: 1)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(lost.head, 0)])
        #expect(lost.echoed == [UInt8](repeating: 0, count: 64))
        #expect(device.served() == served)
        try expectEcho(q, region: 0)
        // Added back, the region works again.
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[1]).encoded(), descriptors: [memory.file.rawValue])
        try expectEcho(q, region: 1)
    }

    // MARK: Rings

    @Test("SET_VRING_BASE sets where the device starts reading the available ring")
    func setVringBase() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: nil)
        let f = d.frontend, memory = d.memory, q = d.queue
        // Five requests the device must skip, then the one it must serve.
        let skipped = (0..<5).map { submitEcho(q, pattern(32, seed: $0)) }
        let served = submitEcho(q, pattern(48, seed: 9))
        try manualSetUp(f, memory: memory, queues: [q], base: 5)
        q.notifyDevice()
        let used = try q.waitForUsed(1)
        #expect(used.count == 1)
        expectEchoed(used.first, served)
        for r in skipped { #expect(r.echoed == [UInt8](repeating: 0, count: 32)) }
        try barrier(f)
        #expect(device.served() == 1)
        // GET_VRING_BASE reports the next index to read.
        #expect(try f.getVringBase(0) == 6)
    }

    @Test("GET_VRING_BASE stops the ring and returns the next available index; restarted at that base it goes on",
          arguments: FrontendProfile.allCases)
    func getVringBaseStopsAndRestarts(profile: FrontendProfile) throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: profile, queueSizes: [64], regionCount: 2)
        let f = d.frontend, q = d.queue
        for i in 0..<3 { try expectEcho(q, pattern(40, seed: i)) }
        let base = try f.getVringBase(0)
        #expect(base == 3)
        // Stopped: a kicked request is not served...
        let pending = submitEcho(q, pattern(70, seed: 7))
        q.notifyDevice()
        expectNothingUsed(q)
        // ...until the ring is started again at the base (QEMU: SET_VRING_BASE, then KICK; ENABLE is still set).
        try f.setVringBase(0, base)
        try f.setVringKick(0, q.kick)
        let used = try q.waitForUsed(1)
        expectEchoed(used.first, pending)
        #expect(q.publishedUsedIndex == 4)
        try expectEcho(q, pattern(90, seed: 8))
        #expect(q.publishedUsedIndex == 5)
        #expect(try f.getVringBase(0) == 5)
    }

    @Test("SET_VRING_KICK without an fd (bit 8): the ring is polled, a request is served without any kick")
    func kickWithoutFD() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q], kickFD: false)
        for i in 0..<3 { try expectEcho(q, pattern(64, seed: i), notify: false) }
        #expect(q.kick.drain() == 0)
    }

    @Test("SET_VRING_CALL without an fd (bit 8): no interrupts, but the used ring is still updated")
    func callWithoutFD() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q])
        try expectEcho(q)
        try expectAck(f, .setVringCall, VringFile(index: 0, hasFile: false).payload.encoded())
        q.call.drain()
        let r = submitEcho(q, pattern(80, seed: 4))
        q.notifyDevice()
        #expect(waitUntil { q.publishedUsedIndex == 2 })
        expectEchoed(q.takeUsed().first, r)
        #expect(!q.call.wait(timeoutMilliseconds: 50))
    }

    @Test("SET_VRING_CALL on a running ring: interrupts go to the new eventfd only")
    func replaceCall() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q])
        try expectEcho(q)
        let newCall = try EventFD()
        try expectAck(f, .setVringCall, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [newCall.rawValue])
        // The ring already had a used element: the new descriptor is signalled once in case the old one
        // lost an interrupt.
        #expect(newCall.wait(timeoutMilliseconds: 5000))
        q.call.drain()
        let r = submitEcho(q, pattern(12))
        q.notifyDevice()
        #expect(newCall.wait(timeoutMilliseconds: 5000))
        expectEchoed(q.takeUsed().first, r)
        #expect(q.call.drain() == 0)
    }

    @Test("SET_FEATURES on running rings restarts them with the new features (EVENT_IDX turned off)")
    func featuresChangeOnRunningRing() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q])
        #expect(q.eventIdx)
        try expectEcho(q)
        try expectAck(f, .setFeatures, U64Payload(f.features & ~VirtioFeature.ringEventIdx).encoded())
        q.eventIdx = false
        // used_event now stays stale: only a device that no longer uses EVENT_IDX interrupts every time.
        for i in 0..<5 {
            q.call.drain()
            let r = submitEcho(q, pattern(20, seed: i))
            q.notifyDevice()
            #expect(q.call.wait(timeoutMilliseconds: 5000), "request \(i)")
            expectEchoed(q.takeUsed().first, r)
        }
    }

    @Test("SET_VRING_ERR accepts an fd or none (bit 8); it rejects a queue that does not exist")
    func setVringErr() throws {
        let f = try DeviceFixture(LoopbackDevice(queueCount: 2), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck])
        let err = try EventFD()
        try expectAck(f, .setVringErr, VringFile(index: 1, hasFile: true).payload.encoded(), descriptors: [err.rawValue])
        try expectAck(f, .setVringErr, VringFile(index: 1, hasFile: false).payload.encoded())
        try expectNack(f, .setVringErr, VringFile(index: 2, hasFile: false).payload.encoded())
    }

    @Test("GET_QUEUE_NUM is the device's exact queue count; requests for other queues are refused")
    func queueNum() throws {
        let f = try DeviceFixture(LoopbackDevice(queueCount: 3), profile: nil).frontend
        #expect(try f.getQueueNum() == 3)
        try f.setProtocolFeatures([.replyAck])
        try expectAck(f, .setVringNum, VringState(index: 2, num: 64).encoded())
        try expectNack(f, .setVringNum, VringState(index: 3, num: 64).encoded())
        try expectNack(f, .setVringEnable, VringState(index: 3, num: 1).encoded())
    }

    @Test("with protocol features, rings start disabled: a kick before SET_VRING_ENABLE is not lost")
    func enableAfterKick() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q], enable: false)
        let r = submitEcho(q, pattern(50))
        q.notifyDevice()
        expectNothingUsed(q)
        try f.setVringEnable(0, true)
        let used = try q.waitForUsed(1)
        expectEchoed(used.first, r)
    }

    @Test("SET_VRING_ENABLE 0 stops a running ring and 1 resumes it where it stopped")
    func disableAndReenable() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q])
        try expectEcho(q)
        try expectAck(f, .setVringEnable, VringState(index: 0, num: 0).encoded())
        let r = submitEcho(q, pattern(60, seed: 2))
        q.notifyDevice()
        expectNothingUsed(q)
        try expectNack(f, .setVringEnable, VringState(index: 0, num: 2).encoded())
        try expectAck(f, .setVringEnable, VringState(index: 0, num: 1).encoded())
        expectEchoed(try q.waitForUsed(1).first, r)
        #expect(q.publishedUsedIndex == 2)
    }

    @Test("without protocol features, a ring runs as soon as it is kicked (no SET_VRING_ENABLE)")
    func noProtocolFeaturesRunsAtKick() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32])
        let f = d.frontend, memory = d.memory, q = d.queue
        try manualSetUp(f, memory: memory, queues: [q], protocolFeatures: false)
        try expectEcho(q)
        try expectEcho(q, pattern(200, seed: 1))
    }

    @Test("VRING_KICK in-band wakes the ring like an eventfd kick")
    func inBandKick() throws {
        let d = try DeviceFixture(LoopbackDevice(), queueSizes: [32])
        let f = d.frontend, q = d.queue
        try expectEcho(q)
        // That request's eventfd kick may still be unread: a worker that finds the next request when it
        // re-checks the ring goes on without reading its kick descriptor. Only in-band kicks follow.
        _ = q.kick.drain()
        for i in 0..<3 {
            let r = submitEcho(q, pattern(30, seed: i))
            try f.kickInBand(0)
            expectEchoed(try q.waitForUsed(1).first, r)
        }
        #expect(q.kick.drain() == 0)
    }

    // MARK: Back-end channel

    @Test("SET_BACKEND_REQ_FD: the device's configChanged() arrives as BACKEND_CONFIG_CHANGE_MSG", arguments: FrontendProfile.allCases)
    func backendChannel(profile: FrontendProfile) throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: profile, regionCount: 2)
        let f = d.frontend
        var backendSocket = d.backendSocket
        if profile == .libblkio {
            // libblkio has no back-end channel of its own; hand one over after bring-up.
            let (ours, theirs) = try socketPair()
            try f.setBackendReqFd(theirs.rawValue)
            backendSocket = ours
        }
        try barrier(f)
        let channel = try #require(device.backend)
        try channel.configChanged()
        let ours = MessageChannel(socket: try #require(backendSocket))
        var p = pollfd(fd: ours.socket.rawValue, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5000) == 1)
        let m = try #require(try ours.receive())
        #expect(m.header.request == BackendRequest.configChangeMsg.rawValue)
        #expect(m.header.request == 2)
        #expect(m.header.flags == .version1)
        #expect(m.payload.isEmpty && m.descriptors.isEmpty)
        try expectEcho(d.queue)
        // The front-end leaves: the device is told the channel is gone.
        f.disconnect()
        try barrier(try d.daemon.connect())
        #expect(device.backend == nil)
        #expect(device.state.withLock { $0.backendChanges } == 2)
    }

    @Test("SET_BACKEND_REQ_FD needs exactly one fd")
    func backendChannelNeedsFD() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck, .backendReq])
        try expectNack(f, .setBackendReqFd)
        let (a, b) = try socketPair()
        try expectNack(f, .setBackendReqFd, descriptors: [a.rawValue, b.rawValue])
        try expectAck(f, .setBackendReqFd, descriptors: [a.rawValue])
    }

    // MARK: Config space

    @Test("GET_CONFIG returns config bytes; SET_CONFIG writes the writable ones and is refused for read-only ones")
    func config() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck, .config])
        #expect(try f.getConfig(offset: 0, count: 16).data == LoopbackDevice.defaultConfig)
        let part = try f.getConfig(offset: 4, count: 4)
        #expect(part.offset == 4 && part.data == [0xa4, 0xa5, 0xa6, 0xa7])
        try expectAck(f, .setConfig, ConfigPayload(offset: 8, data: [1, 2, 3, 4]).encoded())
        #expect(try f.getConfig(offset: 6, count: 8).data == [0xa6, 0xa7, 1, 2, 3, 4, 0xac, 0xad])
        try expectNack(f, .setConfig, ConfigPayload(offset: 0, data: [9]).encoded())
        try expectNack(f, .setConfig, ConfigPayload(offset: 6, data: [9, 9, 9, 9]).encoded())
        #expect(try f.getConfig(offset: 0, count: 8).data == Array(LoopbackDevice.defaultConfig[0..<8]))
    }

    @Test("GET_CONFIG outside the config space gets a reply with no data; SET_CONFIG there is refused")
    func configOutOfRange() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck, .config])
        let reply = try f.getConfig(offset: 12, count: 8)
        #expect(reply.data.isEmpty)
        #expect(reply.offset == 12)
        #expect(try f.getConfig(offset: 0x1000, count: 4).data.isEmpty)
        try expectNack(f, .setConfig, ConfigPayload(offset: 16, data: [1]).encoded())
        try expectNack(f, .setConfig, ConfigPayload(offset: 15, data: [1, 2]).encoded())
        // The connection goes on.
        #expect(try f.getConfig(offset: 15, count: 1).data == [0xaf])

        let plain = try DeviceFixture(LoopbackDevice(configSize: 0), profile: nil).frontend
        #expect(try plain.getConfig(offset: 0, count: 4).data.isEmpty)
    }

    // MARK: Inflight

    @Test("GET_INFLIGHT_FD returns a mappable fd of the size reported; SET_INFLIGHT_FD takes it back on a new connection")
    func inflight() throws {
        let daemon = try InProcessDaemon(device: LoopbackDevice(queueCount: 2))
        defer { daemon.stop() }
        var kept: OwnedDescriptor?
        var description: InflightDescription?
        do {
            let f = try daemon.connect()
            try f.setProtocolFeatures([.replyAck, .inflightShmfd])
            let (d, fd) = try f.getInflightFd(queueCount: 2, queueSize: 256)
            let file = try #require(fd)
            #expect(d.queueCount == 2 && d.queueSize == 256)
            #expect(d.mmapSize == UInt64(2 * InflightRegion.queueRegionSize(queueSize: 256)))
            #expect(d.mmapSize >= 2 * (16 + 16 * 256))
            var st = stat()
            #expect(fstat(file.rawValue, &st) == 0)
            #expect(UInt64(st.st_size) >= d.mmapOffset + d.mmapSize)
            let p: UnsafeMutableRawPointer? = mmap(nil, Int(d.mmapSize), PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, off_t(d.mmapOffset))
            #expect(p != nil && p != MAP_FAILED)
            if let p, p != MAP_FAILED {
                let bytes = UnsafeMutableRawBufferPointer(start: p, count: Int(d.mmapSize))
                #expect(bytes.allSatisfy { $0 == 0 })
                bytes[0] = 0x5a
                munmap(p, Int(d.mmapSize))
            }
            kept = file
            description = d
        }
        // Reconnected, the front-end hands the region back.
        let f = try daemon.connect()
        try f.setProtocolFeatures([.replyAck, .inflightShmfd])
        let d = try #require(description), file = try #require(kept)
        try expectAck(f, .setInflightFd, d.encoded(), descriptors: [file.rawValue])
        // A description larger than the file is refused.
        var tooBig = d
        tooBig.mmapSize = d.mmapSize * 4
        try expectNack(f, .setInflightFd, tooBig.encoded(), descriptors: [file.rawValue])
        try expectNack(f, .setInflightFd, d.encoded())
        // Asking for more queues than the device has, or a bad size, gets an empty reply.
        let (bad, badFD) = try f.getInflightFd(queueCount: 3, queueSize: 256)
        #expect(bad.mmapSize == 0 && badFD == nil)
        let (odd, oddFD) = try f.getInflightFd(queueCount: 1, queueSize: 100)
        #expect(odd.mmapSize == 0 && oddFD == nil)
    }

    @Test("a device without INFLIGHT_SHMFD refuses GET_INFLIGHT_FD with an empty reply")
    func inflightUnsupported() throws {
        let f = try DeviceFixture(LoopbackDevice(inflight: false), profile: nil).frontend
        let (d, fd) = try f.getInflightFd(queueCount: 1, queueSize: 64)
        #expect(d.mmapSize == 0 && fd == nil)
        #expect(try f.getQueueNum() == 1)
    }

    // MARK: Status

    @Test("SET_STATUS stores the status byte GET_STATUS returns; values above 0xff are refused")
    func status() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        #expect(try f.getStatus() == 0)
        try f.setProtocolFeatures([.replyAck, .status])
        try expectAck(f, .setStatus, U64Payload(0x0f).encoded())
        #expect(try f.getStatus() == 0x0f)
        try expectNack(f, .setStatus, U64Payload(0x100).encoded())
        #expect(try f.getStatus() == 0x0f)
        try expectAck(f, .setStatus, U64Payload(0).encoded())
        #expect(try f.getStatus() == 0)
    }

    // MARK: Replies and acks

    @Test("with REPLY_ACK, every command that asks for a reply is acked with 0 on success")
    func needReplyAcks() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [32], regionCount: 2)
        let f = d.frontend, memory = d.memory, q = d.queue
        let offered = try f.getProtocolFeatures()
        try f.setProtocolFeatures(offered)
        try expectAck(f, .setProtocolFeatures, U64Payload(offered.rawValue).encoded())
        try expectAck(f, .setOwner)
        let features = try f.getFeatures()
        try expectAck(f, .setFeatures, U64Payload(features).encoded())
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[0]).encoded(), descriptors: [memory.file.rawValue])
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[1]).encoded(), descriptors: [memory.file.rawValue])
        try expectAck(f, .setVringNum, VringState(index: 0, num: 32).encoded())
        try expectAck(f, .setVringBase, VringState(index: 0, num: 0).encoded())
        try expectAck(f, .setVringAddr, q.address.encoded())
        try expectAck(f, .setVringCall, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [q.call.rawValue])
        let err = try EventFD()
        try expectAck(f, .setVringErr, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [err.rawValue])
        try expectAck(f, .setVringKick, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [q.kick.rawValue])
        try expectAck(f, .setVringEnable, VringState(index: 0, num: 1).encoded())
        q.eventIdx = features & VirtioFeature.ringEventIdx != 0
        try expectEcho(q)
        let r = submitEcho(q, pattern(20))
        try expectAck(f, .vringKick, VringState(index: 0, num: 0).encoded())
        expectEchoed(try q.waitForUsed(1).first, r)
        try expectAck(f, .setStatus, U64Payload(7).encoded())
        try expectAck(f, .setConfig, ConfigPayload(offset: 8, data: [1]).encoded())
        let (_, theirs) = try socketPair()
        try expectAck(f, .setBackendReqFd, descriptors: [theirs.rawValue])
        try expectAck(f, .setMemTable, MemoryTable(regions: memory.regions).encoded(), descriptors: [memory.file.rawValue, memory.file.rawValue])
        try expectAck(f, .remMemReg, SingleMemoryRegion(memory.regions[1]).encoded())
        let (description, fd) = try f.getInflightFd(queueCount: 1, queueSize: 32)
        try expectAck(f, .setInflightFd, description.encoded(), descriptors: [try #require(fd).rawValue])
        try expectEcho(q, region: 0)
        try expectAck(f, .resetDevice)
        try expectAck(f, .resetOwner)
    }

    @Test("without REPLY_ACK negotiated, NEED_REPLY gets no ack: the next reply is the next GET's")
    func noAckWithoutReplyAck() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.send(.setOwner, needReply: true)
        try f.send(.setStatus, payload: U64Payload(1).encoded(), needReply: true)
        try f.send(.setVringNum, payload: VringState(index: 9, num: 3).encoded(), needReply: true) // refused, still silent
        let reply = try f.query(.getQueueNum)
        #expect(try U64Payload(decoding: reply.payload, for: .getQueueNum).value == 1)
        // Protocol features negotiated, but not REPLY_ACK: still no acks.
        try f.setProtocolFeatures([.mq, .status])
        try f.send(.setStatus, payload: U64Payload(3).encoded(), needReply: true)
        #expect(try f.getStatus() == 3)
    }

    @Test("a GET with NEED_REPLY gets its payload reply and no extra ack")
    func getWithNeedReply() throws {
        let f = try DeviceFixture(LoopbackDevice(queueCount: 2), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck])
        f.needReplyOnEverything = true
        #expect(try f.getQueueNum() == 2)
        #expect(try f.getStatus() == 0)
        #expect(try f.getMaxMemSlots() == 32)
        #expect(try f.getFeatures() & VirtioFeature.version1 != 0)
    }

    @Test("an unknown request (99) with NEED_REPLY gets a failure ack and the connection survives")
    func unknownRequest() throws {
        let f = try DeviceFixture(LoopbackDevice(), profile: nil).frontend
        try f.setProtocolFeatures([.replyAck])
        try sendRaw(f, request: 99, flags: 0x9)
        let m = try #require(try receiveAny(f))
        #expect(m.header.request == 99)
        #expect(m.header.flags.contains(.reply))
        let value = try U64Payload(decoding: m.payload, for: .getFeatures).value
        #expect(value != 0)
        #expect(try f.getQueueNum() == 1)
        // With a payload and no NEED_REPLY: silently refused, nothing out of step.
        try sendRaw(f, request: 99, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try f.getQueueNum() == 1)
        // A known request the kit does not support is refused the same way.
        try expectNack(f, .setVringEndian, VringState(index: 0, num: 0).encoded())
        #expect(try f.getQueueNum() == 1)
    }
}
}

/// A manual bring-up that shares only `regions` of `memory` (by ADD_MEM_REG), with acks.
func manualSetUpWithRegions(_ f: FakeFrontend, memory: FakeGuestMemory, q: FakeQueue, regions: [Int]) throws {
    try f.setProtocolFeatures(try f.getProtocolFeatures())
    try expectAck(f, .setOwner)
    let features = try f.getFeatures()
    try expectAck(f, .setFeatures, U64Payload(features).encoded())
    for r in regions {
        try expectAck(f, .addMemReg, SingleMemoryRegion(memory.regions[r]).encoded(), descriptors: [memory.file.rawValue])
    }
    try expectRingStartAcked(f, q, features: features)
}

/// Starts ring `q` at base 0, each message acked, as QEMU does when it (re)starts the device;
/// `features` are those the test sent (EVENT_IDX among them or not).
func expectRingStartAcked(_ f: FakeFrontend, _ q: FakeQueue, features: UInt64) throws {
    let index = UInt32(q.index)
    try expectAck(f, .setVringNum, VringState(index: index, num: UInt32(q.size)).encoded())
    try expectAck(f, .setVringBase, VringState(index: index, num: 0).encoded())
    try expectAck(f, .setVringAddr, q.address.encoded())
    try expectAck(f, .setVringCall, VringFile(index: index, hasFile: true).payload.encoded(), descriptors: [q.call.rawValue])
    try expectAck(f, .setVringKick, VringFile(index: index, hasFile: true).payload.encoded(), descriptors: [q.kick.rawValue])
    try expectAck(f, .setVringEnable, VringState(index: index, num: 1).encoded())
    q.eventIdx = features & VirtioFeature.ringEventIdx != 0
}
