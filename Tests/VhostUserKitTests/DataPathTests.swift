import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

extension KitTests {
@Suite("data path")
struct DataPathTests {
    // MARK: Notifications

    @Test("EVENT_IDX negotiated or masked: every request is served and interrupts the driver",
          arguments: FrontendProfile.allCases, [true, false])
    func eventIdx(profile: FrontendProfile, negotiated: Bool) throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: profile, queueSizes: [32], regionCount: 2, maskFeatures: negotiated ? 0 : VirtioFeature.ringEventIdx)
        let memory = d.memory
        #expect((d.features & VirtioFeature.ringEventIdx != 0) == negotiated)
        let q = d.queue
        #expect(q.eventIdx == negotiated)
        // More requests than the ring has entries, one at a time: each must raise its own interrupt.
        for i in 0..<40 {
            q.call.drain()
            let r = submitEcho(q, pattern(16, seed: i))
            q.notifyDevice()
            #expect(q.call.wait(timeoutMilliseconds: 5000), "no interrupt for request \(i)")
            let used = q.takeUsed()
            #expect(used.count == 1)
            expectEchoed(used.first, r)
        }
        if negotiated {
            // Idle again, the device asks to be kicked when the next entry is made available.
            let availEvent = memory.pointer(q.usedRing + UInt64(q.layout.availEventOffset))
            #expect(waitUntil { vhu_load_acquire_u16(availEvent) == q.availIndex })
        } else {
            #expect(waitUntil { vhu_load_acquire_u16(memory.pointer(q.usedRing)) & SplitRingLayout.usedNoNotify == 0 })
        }
    }

    @Test("without EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT suppresses the interrupt but the used ring is updated")
    func noInterruptFlag() throws {
        let d = try DeviceFixture(LoopbackDevice(), queueSizes: [32], maskFeatures: VirtioFeature.ringEventIdx)
        let memory = d.memory, q = d.queue
        try expectEcho(q)
        let flags = memory.pointer(q.availableRing)
        vhu_store_release_u16(flags, SplitRingLayout.availNoInterrupt)
        q.call.drain()
        let r = submitEcho(q, pattern(33))
        q.notifyDevice()
        #expect(waitUntil { q.publishedUsedIndex == 2 })
        #expect(!q.call.wait(timeoutMilliseconds: 50))
        expectEchoed(q.takeUsed().first, r)
        vhu_store_release_u16(flags, 0)
        try expectEcho(q, pattern(44))
    }

    // MARK: Descriptors

    @Test("INDIRECT descriptors are followed in every ordering", arguments: FrontendProfile.allCases)
    func indirect(profile: FrontendProfile) throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: profile, regionCount: 2)
        #expect(d.features & VirtioFeature.ringIndirectDesc != 0)
        let q = d.queue
        try expectEcho(q, pattern(300), indirect: true)
        try expectEcho(q, pattern(20))
        try expectEcho(q, pattern(1000, seed: 4), indirect: true)
    }

    @Test("with INDIRECT_DESC masked, an indirect chain is returned with length 0 and the queue goes on")
    func indirectNotNegotiated() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, profile: .crosvm, maskFeatures: VirtioFeature.ringIndirectDesc)
        #expect(d.features & VirtioFeature.ringIndirectDesc == 0)
        let q = d.queue
        let r = submitEcho(q, pattern(64), indirect: true)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(r.head, 0)])
        #expect(r.echoed == [UInt8](repeating: 0, count: 64))
        try expectEcho(q)
        #expect(device.served() == 1)
    }

    @Test("a request split over many descriptors is gathered and scattered in order")
    func scatterGather() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .cloudHypervisor)
        let memory = d.memory, q = d.queue
        let payload = pattern(161, seed: 6)
        var buffers: [BufferSpec] = []
        var offset = 0
        for size in [1, 7, 100, 3, 50] {
            let a = memory.allocate(size, alignment: 1)
            memory.write(Array(payload[offset..<offset + size]), at: a)
            buffers.append(.readable(a, size))
            offset += size
        }
        let outs = [10, 10, 180].map { (memory.allocate($0, alignment: 1), $0) }
        buffers += outs.map { .writable($0.0, $0.1) }
        for indirect in [false, true] {
            for (a, n) in outs { memory.write([UInt8](repeating: 0, count: n), at: a) }
            let head = q.submit(buffers, indirect: indirect)
            q.notifyDevice()
            expectUsed(try q.waitForUsed(1), [(head, 161)])
            let written = outs.flatMap { memory.read($0.0, count: $0.1) }
            #expect(Array(written[0..<161]) == payload)
            #expect(written[161...].allSatisfy { $0 == 0 })
        }
    }

    @Test("a chain of exactly the queue size is accepted, direct or in an indirect table")
    func chainOfQueueSize() throws {
        let d = try DeviceFixture(LoopbackDevice())
        let memory = d.memory, q = d.queue
        for indirect in [false, true] {
            let payload = pattern(32, seed: indirect ? 1 : 2)
            let input = memory.allocate(32), output = memory.allocate(32)
            memory.write(payload, at: input)
            // 8 readable and 8 writable descriptors of 4 bytes: 16, the queue size.
            let buffers = (0..<8).map { BufferSpec.readable(input + UInt64(4 * $0), 4) }
                        + (0..<8).map { BufferSpec.writable(output + UInt64(4 * $0), 4) }
            let head = q.submit(buffers, indirect: indirect)
            q.notifyDevice()
            expectUsed(try q.waitForUsed(1), [(head, 32)])
            #expect(memory.read(output, count: 32) == payload, "indirect: \(indirect)")
        }
    }

    // MARK: Memory layout

    @Test("a buffer spanning two adjacent regions is served in every ordering", arguments: FrontendProfile.allCases)
    func bufferAcrossRegions(profile: FrontendProfile) throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: profile, queueSizes: [64], regionCount: 2)
        let memory = d.memory, q = d.queue
        let boundary = memory.regions[1].guestPhysicalAddress
        #expect(memory.regions[0].guestPhysicalAddress + memory.regions[0].size == boundary)
        // Keep the allocator out of the first 8 KiB of region 1; the end of region 0 is never allocated.
        #expect(memory.allocate(8192, region: 1) == boundary)

        // A readable buffer across the boundary, written by hand into the descriptor table.
        let first = pattern(600, seed: 1)
        memory.write(first, at: boundary - 300)
        let out1 = boundary + 4096
        q.writeDescriptor(40, address: boundary - 300, length: 600, flags: SplitRingLayout.flagNext, next: 41)
        q.writeDescriptor(41, address: out1, length: 600, flags: SplitRingLayout.flagWrite, next: 0)
        q.makeAvailable(head: 40)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(40, 600)])
        #expect(memory.read(out1, count: 600) == first)

        // A writable buffer across the boundary.
        let second = pattern(500, seed: 2)
        let in2 = boundary + 6000
        memory.write(second, at: in2)
        memory.write([UInt8](repeating: 0, count: 600), at: boundary - 300)
        q.writeDescriptor(42, address: in2, length: 500, flags: SplitRingLayout.flagNext, next: 43)
        q.writeDescriptor(43, address: boundary - 250, length: 500, flags: SplitRingLayout.flagWrite, next: 0)
        q.makeAvailable(head: 42)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(42, 500)])
        #expect(memory.read(boundary - 250, count: 500) == second)
        #expect(memory.read(boundary - 300, count: 50) == [UInt8](repeating: 0, count: 50))
        #expect(memory.read(boundary + 250, count: 50) == [UInt8](repeating: 0, count: 50))
    }

    // MARK: Volume

    @Test("100 chains made available with one kick are all completed")
    func batch() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, queueSizes: [256])
        let q = d.queue
        let requests = (0..<100).map { submitEcho(q, pattern(16 + $0, seed: $0)) }
        q.notifyDevice()
        let used = try q.waitForUsed(100)
        #expect(used.count == 100)
        for (u, r) in zip(used, requests) { expectEchoed(u, r) }
        #expect(device.served() == 100)
    }

    @Test("a 32768-entry ring (crosvm) takes 16384 chains in one kick and goes on")
    func queueSize32768() throws {
        let d = try DeviceFixture(LoopbackDevice(maxQueueSize: 32768), profile: .crosvm, queueSizes: [32768])
        let memory = d.memory, q = d.queue
        let count = 16384
        let input = memory.allocate(4 * count), output = memory.allocate(4 * count)
        var heads: [UInt32] = []
        for i in 0..<count {
            memory.pointer(input + UInt64(4 * i)).storeBytes(of: UInt32(i).littleEndian, as: UInt32.self)
            heads.append(UInt32(q.submit([.readable(input + UInt64(4 * i), 4), .writable(output + UInt64(4 * i), 4)])))
        }
        q.notifyDevice()
        let used = try q.waitForUsed(count, timeoutMilliseconds: 20_000)
        #expect(used.map(\.id) == heads)
        #expect(used.allSatisfy { $0.length == 4 })
        #expect(memory.read(output, count: 4 * count) == memory.read(input, count: 4 * count))
        for i in 0..<3 { try expectEcho(q, pattern(64, seed: i)) }
        #expect(q.publishedUsedIndex == UInt16(count + 3))
    }

    @Test("16-bit ring indices wrap: 66000 requests through a 256-entry ring")
    func indexWrap() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .crosvm, queueSizes: [256])
        let memory = d.memory, q = d.queue
        let batch = 120, total = 66_000
        let input = memory.allocate(4 * batch), output = memory.allocate(4 * batch)
        var done = 0
        var failures = 0
        while done < total {
            let n = min(batch, total - done)
            for j in 0..<n {
                memory.pointer(input + UInt64(4 * j)).storeBytes(of: UInt32(done + j).littleEndian, as: UInt32.self)
                q.submit([.readable(input + UInt64(4 * j), 4), .writable(output + UInt64(4 * j), 4)])
            }
            q.notifyDevice()
            let used = try q.waitForUsed(n)
            if used.count != n || !used.allSatisfy({ $0.length == 4 }) { failures += 1 }
            if memory.read(output, count: 4 * n) != memory.read(input, count: 4 * n) { failures += 1 }
            done += n
        }
        #expect(failures == 0)
        #expect(q.availIndex == UInt16(truncatingIfNeeded: total))
        #expect(q.publishedUsedIndex == UInt16(truncatingIfNeeded: total))
    }

    // MARK: Asynchronous devices

    @Test("an asynchronous device completes chains from another thread, out of order", arguments: FrontendProfile.allCases)
    func outOfOrderCompletion(profile: FrontendProfile) throws {
        let device = AsyncLoopbackDevice(batch: 8)
        let d = try DeviceFixture(device, profile: profile, queueSizes: [64], regionCount: 2)
        let q = d.queue
        for round in 0..<4 {
            let requests = (0..<8).map { submitEcho(q, pattern(24 + $0, seed: 8 * round + $0), indirect: $0 % 3 == 0) }
            q.notifyDevice()
            let used = try q.waitForUsed(8)
            // The completer answers each batch of 8 last-taken first.
            #expect(used.map(\.id) == requests.reversed().map { UInt32($0.head) })
            for r in requests {
                let u = used.first { $0.id == UInt32(r.head) }
                expectEchoed(u, r)
            }
        }
        #expect(device.held.withLock { $0 } == 0)
    }

    @Test("stopping a queue (GET_VRING_BASE) completes the chains an asynchronous device still holds")
    func asyncFlushOnStop() throws {
        let device = AsyncLoopbackDevice(batch: 8)
        let d = try DeviceFixture(device, queueSizes: [64])
        let f = d.frontend, q = d.queue
        let requests = (0..<3).map { submitEcho(q, pattern(40, seed: $0)) }
        q.notifyDevice()
        #expect(waitUntil { device.held.withLock { $0 } == 3 })
        #expect(q.publishedUsedIndex == 0)
        #expect(try f.getVringBase(0) == 3)
        // By the time GET_VRING_BASE is answered, the held chains are in the used ring.
        #expect(q.publishedUsedIndex == 3)
        let used = q.takeUsed()
        #expect(used.map(\.id) == requests.reversed().map { UInt32($0.head) })
        for (u, r) in zip(used, requests.reversed()) { expectEchoed(u, r) }
        #expect(device.flushedOnStop.withLock { $0 } == 1)
        #expect(device.held.withLock { $0 } == 0)
    }
}
}
