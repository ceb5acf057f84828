import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Every test breaks a rule on one connection, checks how the daemon answered, closes that connection
/// and checks the daemon still serves a fresh one.
extension KitTests {
@Suite("error paths")
struct ErrorPathTests {
    // MARK: Framing

    @Test("a truncated header (5 bytes, then close) ends the session; the daemon serves a fresh connection")
    func truncatedHeader() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend
        try f.sendRaw([1, 0, 0, 0, 1])
        try expectFreshConnectionServed(after: d)
    }

    @Test("a truncated payload (header says 40 bytes, 10 arrive, then close) ends the session")
    func truncatedPayload() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend
        try sendRaw(f, request: FrontendRequest.setVringAddr.rawValue, size: 40, payload: [UInt8](repeating: 0, count: 10))
        try expectFreshConnectionServed(after: d)
    }

    @Test("an oversized payload (size field 1 MiB) drops the connection")
    func oversizedPayload() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend
        #expect(try f.getQueueNum() == 1)
        try sendRaw(f, request: FrontendRequest.setConfig.rawValue, size: 1 << 20)
        #expect(connectionDropped(f))
        try expectFreshConnectionServed(after: d)
    }

    @Test("a bad protocol version in the flags drops the connection")
    func badVersion() throws {
        let daemon = try InProcessDaemon(device: LoopbackDevice())
        defer { daemon.stop() }
        for flags: UInt32 in [0x0, 0x2, 0x3 | 0x8] {
            do {
                let f = try daemon.connect()
                try sendRaw(f, request: FrontendRequest.getFeatures.rawValue, flags: flags)
                #expect(connectionDropped(f), "flags 0x\(String(flags, radix: 16))")
            }
            try expectFreshConnectionServed(daemon)
        }
    }

    @Test("garbage bytes drop the connection")
    func garbage() throws {
        let daemon = try InProcessDaemon(device: LoopbackDevice())
        defer { daemon.stop() }
        do {
            let f = try daemon.connect()
            try f.sendRaw(Array(repeating: [0xde, 0xad, 0xbe, 0xef], count: 16).flatMap { $0 })
            #expect(connectionDropped(f))
        }
        do {
            // Garbage that happens to carry version 1 and a small size: refused as an unknown request,
            // and the stream stays in step.
            let f = try daemon.connect()
            try f.sendRaw([0x41, 0x41, 0x41, 0x41, 0x01, 0, 0, 0, 4, 0, 0, 0, 0x42, 0x42, 0x42, 0x42])
            #expect(try f.getQueueNum() == 1)
        }
        try expectFreshConnectionServed(daemon)
    }

    @Test("a message with more than 8 descriptors drops the connection")
    func tooManyDescriptors() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend
        let events = try (0..<9).map { _ in try EventFD() }
        try sendRaw(f, request: FrontendRequest.setMemTable.rawValue, payload: [UInt8](repeating: 0, count: 8), descriptors: events.map(\.rawValue))
        #expect(connectionDropped(f))
        try expectFreshConnectionServed(after: d)
    }

    // MARK: Refused requests (the connection survives)

    @Test("a wrong fd count is refused and the connection survives")
    func wrongFDCount() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend, memory = d.memory, q = d.queue
        try f.setProtocolFeatures([.replyAck])
        let a = try EventFD(), b = try EventFD()
        try expectNack(f, .setVringKick, VringFile(index: 0, hasFile: true).payload.encoded(), descriptors: [a.rawValue, b.rawValue])
        try expectNack(f, .setVringKick, VringFile(index: 0, hasFile: true).payload.encoded())
        try expectNack(f, .setVringCall, VringFile(index: 0, hasFile: false).payload.encoded(), descriptors: [a.rawValue])
        try expectNack(f, .setMemTable, MemoryTable(regions: memory.regions).encoded())
        try expectNack(f, .addMemReg, SingleMemoryRegion(memory.regions[0]).encoded())
        try expectNack(f, .setOwner, descriptors: [a.rawValue])
        #expect(try f.getQueueNum() == 1)
        // The connection is still usable for a whole bring-up.
        try manualSetUp(f, memory: memory, queues: [q])
        try expectEcho(q)
        try expectFreshConnectionServed(after: d)
    }

    @Test("SET_MEM_TABLE with 0 or 9 regions is refused")
    func regionCount() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [], memorySize: 9 << 20)
        let f = d.frontend, memory = d.memory
        try f.setProtocolFeatures([.replyAck])
        try expectNack(f, .setMemTable, [0, 0, 0, 0, 0, 0, 0, 0])
        let nine = (0..<9).map { i in
            MemoryRegionDescription(guestPhysicalAddress: UInt64(i) << 20, size: 1 << 20, userAddress: 0x7000_0000 + (UInt64(i) << 20), mmapOffset: UInt64(i) << 20)
        }
        var payload = MemoryTable(regions: Array(nine[0..<8])).encoded()
        payload[0] = 9
        payload += SingleMemoryRegion(nine[8]).encoded().dropFirst(8)
        try expectNack(f, .setMemTable, payload, descriptors: Array(repeating: memory.file.rawValue, count: 8))
        #expect(try f.getQueueNum() == 1)
        try expectFreshConnectionServed(after: d)
    }

    @Test("overlapping memory regions are refused, by SET_MEM_TABLE and by ADD_MEM_REG")
    func overlappingRegions() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [])
        let f = d.frontend, memory = d.memory
        try f.setProtocolFeatures([.replyAck])
        let a = MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 2 << 20, userAddress: 0x7000_0000, mmapOffset: 0)
        let b = MemoryRegionDescription(guestPhysicalAddress: 0x1_0010_0000, size: 2 << 20, userAddress: 0x8000_0000, mmapOffset: 2 << 20)
        let fd = memory.file.rawValue
        try expectNack(f, .setMemTable, MemoryTable(regions: [a, b]).encoded(), descriptors: [fd, fd])
        try expectAck(f, .addMemReg, SingleMemoryRegion(a).encoded(), descriptors: [fd])
        try expectNack(f, .addMemReg, SingleMemoryRegion(b).encoded(), descriptors: [fd])
        try expectNack(f, .addMemReg, SingleMemoryRegion(a).encoded(), descriptors: [fd])
        try expectFreshConnectionServed(after: d)
    }

    @Test("a memory region larger than its file is refused without touching it (no SIGBUS)")
    func regionLargerThanFile() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil)
        let f = d.frontend
        try f.setProtocolFeatures([.replyAck])
        let small = OwnedDescriptor(vhu_memfd_create("small", 0))
        #expect(ftruncate(small.rawValue, 4096) == 0)
        let big = MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 1 << 20, userAddress: 0x7000_0000, mmapOffset: 0)
        let offset = MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 4096, userAddress: 0x7000_0000, mmapOffset: 4096)
        try expectNack(f, .setMemTable, MemoryTable(regions: [big]).encoded(), descriptors: [small.rawValue])
        try expectNack(f, .addMemReg, SingleMemoryRegion(big).encoded(), descriptors: [small.rawValue])
        try expectNack(f, .addMemReg, SingleMemoryRegion(offset).encoded(), descriptors: [small.rawValue])
        // Neither a zero size nor a range that wraps around the address space.
        var empty = big; empty.size = 0
        try expectNack(f, .addMemReg, SingleMemoryRegion(empty).encoded(), descriptors: [small.rawValue])
        var wraps = big; wraps.guestPhysicalAddress = UInt64.max - 4095; wraps.size = 8192
        try expectNack(f, .addMemReg, SingleMemoryRegion(wraps).encoded(), descriptors: [small.rawValue])
        // An fd that cannot be mapped at all.
        let event = try EventFD()
        try expectNack(f, .addMemReg, SingleMemoryRegion(big).encoded(), descriptors: [event.rawValue])
        // The file that fits is accepted.
        let fits = MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 4096, userAddress: 0x7000_0000, mmapOffset: 0)
        try expectAck(f, .addMemReg, SingleMemoryRegion(fits).encoded(), descriptors: [small.rawValue])
        try expectFreshConnectionServed(after: d)
    }

    @Test("ring sizes 0, not a power of two, or above the device maximum are refused")
    func badRingSizes() throws {
        let d = try DeviceFixture(LoopbackDevice(maxQueueSize: 1024), profile: nil)
        let f = d.frontend
        try f.setProtocolFeatures([.replyAck])
        for size: UInt32 in [0, 3, 100, 2048, 32768, 65536] {
            try expectNack(f, .setVringNum, VringState(index: 0, num: size).encoded())
        }
        try expectAck(f, .setVringNum, VringState(index: 0, num: 1024).encoded())
        try expectAck(f, .setVringNum, VringState(index: 0, num: 1).encoded())
        try expectNack(f, .setVringBase, VringState(index: 0, num: 0x1_0000).encoded())
        try expectFreshConnectionServed(after: d)
    }

    @Test("vring addresses outside guest memory are refused")
    func ringOutsideMemory() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: nil, queueSizes: [64])
        let f = d.frontend, memory = d.memory, q = d.queue
        try f.setProtocolFeatures([.replyAck])
        try expectAck(f, .setMemTable, MemoryTable(regions: memory.regions).encoded(), descriptors: [memory.file.rawValue])
        try expectAck(f, .setVringNum, VringState(index: 0, num: 64).encoded())
        let end = memory.regions[0].userAddress + memory.regions[0].size
        var a = q.address
        a.descriptorTable = end
        try expectNack(f, .setVringAddr, a.encoded())
        a = q.address
        a.usedRing = end - 100  // the used ring needs 518 bytes
        try expectNack(f, .setVringAddr, a.encoded())
        a = q.address
        a.availableRing = memory.regions[0].guestPhysicalAddress  // a guest address, not a front-end one
        try expectNack(f, .setVringAddr, a.encoded())
        try expectAck(f, .setVringAddr, q.address.encoded())
        try expectFreshConnectionServed(after: d)
    }

    // MARK: Malformed chains (returned with length 0; the queue goes on)

    @Test("a descriptor outside guest memory: used length 0, no byte written, the next request served")
    func descriptorOutsideMemory() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device, queueSizes: [64], regionCount: 2)
        let f = d.frontend, memory = d.memory, q = d.queue
        let last = memory.regions[1]
        let end = last.guestPhysicalAddress + last.size
        for bad in [BufferSpec.writable(0x1000, 64), .writable(end - 32, 64), .writable(end, 8),
                    .writable(UInt64.max - 15, 64), .readable(0x10, 16)] {
            let input = memory.allocate(64), output = memory.allocate(64)
            memory.write(pattern(64), at: input)
            let chain: [BufferSpec] = bad.writable ? [.readable(input, 64), .writable(output, 64), bad]
                                                   : [.readable(input, 64), bad, .writable(output, 64)]
            let head = q.submit(chain)
            q.notifyDevice()
            expectUsed(try q.waitForUsed(1), [(head, 0)])
            #expect(memory.read(output, count: 64) == [UInt8](repeating: 0, count: 64), "\(bad)")
            #expect(memory.read(end - 32, count: 32) == [UInt8](repeating: 0, count: 32))
            try expectEcho(q, pattern(50, seed: 1))
        }
        try barrier(f)
        #expect(device.served() == 5)
        try expectFreshConnectionServed(after: d)
    }

    @Test("a descriptor loop: used length 0, the queue keeps working")
    func descriptorLoop() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .crosvm, queueSizes: [64])
        let memory = d.memory, q = d.queue
        let a = memory.allocate(8), b = memory.allocate(8)
        q.writeDescriptor(60, address: a, length: 8, flags: SplitRingLayout.flagNext, next: 61)
        q.writeDescriptor(61, address: b, length: 8, flags: SplitRingLayout.flagNext, next: 60)
        q.makeAvailable(head: 60)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(60, 0)])
        // A loop inside an indirect table, and a NEXT index outside the table.
        let table = memory.allocate(32, alignment: 16)
        q.writeDescriptor(0, address: a, length: 8, flags: SplitRingLayout.flagNext, next: 1, table: table)
        q.writeDescriptor(1, address: b, length: 8, flags: SplitRingLayout.flagNext, next: 0, table: table)
        q.writeDescriptor(62, address: table, length: 32, flags: SplitRingLayout.flagIndirect, next: 0)
        q.makeAvailable(head: 62)
        q.writeDescriptor(63, address: a, length: 8, flags: SplitRingLayout.flagNext, next: 64)
        q.makeAvailable(head: 63)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(2), [(62, 0), (63, 0)])
        try expectEcho(q)
        try expectEcho(q, indirect: true)
        try expectFreshConnectionServed(after: d)
    }

    @Test("nested indirect tables: used length 0, the queue keeps working")
    func nestedIndirect() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .cloudHypervisor, queueSizes: [64])
        let memory = d.memory, q = d.queue
        let input = memory.allocate(16), output = memory.allocate(16)
        memory.write(pattern(16), at: input)
        let inner = memory.allocate(32, alignment: 16), outer = memory.allocate(16, alignment: 16)
        q.writeDescriptor(0, address: input, length: 16, flags: SplitRingLayout.flagNext, next: 1, table: inner)
        q.writeDescriptor(1, address: output, length: 16, flags: SplitRingLayout.flagWrite, next: 0, table: inner)
        q.writeDescriptor(0, address: inner, length: 32, flags: SplitRingLayout.flagIndirect, next: 0, table: outer)
        q.writeDescriptor(60, address: outer, length: 16, flags: SplitRingLayout.flagIndirect, next: 0)
        q.makeAvailable(head: 60)
        // Also refused: INDIRECT together with NEXT, and an indirect table whose size is not a multiple of 16.
        q.writeDescriptor(61, address: inner, length: 32, flags: SplitRingLayout.flagIndirect | SplitRingLayout.flagNext, next: 62)
        q.writeDescriptor(62, address: output, length: 16, flags: SplitRingLayout.flagWrite, next: 0)
        q.makeAvailable(head: 61)
        q.writeDescriptor(63, address: inner, length: 24, flags: SplitRingLayout.flagIndirect, next: 0)
        q.makeAvailable(head: 63)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(3), [(60, 0), (61, 0), (63, 0)])
        #expect(memory.read(output, count: 16) == [UInt8](repeating: 0, count: 16))
        try expectEcho(q, indirect: true)
        try expectFreshConnectionServed(after: d)
    }

    @Test("a chain longer than the queue size: used length 0, the queue keeps working")
    func chainTooLong() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .libblkio)
        let memory = d.memory, q = d.queue
        let input = memory.allocate(9 * 4), output = memory.allocate(8 * 4)
        memory.write(pattern(36), at: input)
        // 9 readable + 8 writable = 17 descriptors in an indirect table, one more than the queue size.
        let buffers = (0..<9).map { BufferSpec.readable(input + UInt64(4 * $0), 4) }
                    + (0..<8).map { BufferSpec.writable(output + UInt64(4 * $0), 4) }
        let head = q.submit(buffers, indirect: true)
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(head, 0)])
        #expect(memory.read(output, count: 32) == [UInt8](repeating: 0, count: 32))
        try expectEcho(q)
        try expectFreshConnectionServed(after: d)
    }

    @Test("a readable descriptor after a writable one: used length 0, nothing written")
    func readableAfterWritable() throws {
        let d = try DeviceFixture(LoopbackDevice())
        let memory = d.memory, q = d.queue
        let a = memory.allocate(16), b = memory.allocate(16), c = memory.allocate(16)
        memory.write(pattern(16), at: a)
        let head = q.submit([.readable(a, 16), .writable(b, 16), .readable(c, 16)])
        q.notifyDevice()
        expectUsed(try q.waitForUsed(1), [(head, 0)])
        #expect(memory.read(b, count: 16) == [UInt8](repeating: 0, count: 16))
        try expectEcho(q)
        try expectFreshConnectionServed(after: d)
    }

    // MARK: Broken rings (the queue stops)

    @Test("an available index jumping by more than the queue size stops the queue and signals the err eventfd")
    func availIndexJump() throws {
        let device = LoopbackDevice()
        let d = try DeviceFixture(device)
        let f = d.frontend, q = d.queue
        let err = try EventFD()
        try f.setVringErr(0, err)
        try barrier(f)
        try expectEcho(q)
        // One entry written, but the index claims 17 new ones on a ring of 16.
        q.makeAvailable(head: 0, advance: 17)
        q.notifyDevice()
        #expect(err.wait(timeoutMilliseconds: 5000))
        expectNothingUsed(q, milliseconds: 100)
        // Nothing more is served on this queue.
        _ = submitEcho(q, pattern(8))
        q.notifyDevice()
        expectNothingUsed(q)
        #expect(device.served() == 1)
        try expectFreshConnectionServed(after: d)
    }

    @Test("a chain head outside the descriptor table stops the queue and signals the err eventfd")
    func headOutOfRange() throws {
        let d = try DeviceFixture(LoopbackDevice(), profile: .crosvm)
        let f = d.frontend, q = d.queue
        let err = try EventFD()
        try f.setVringErr(0, err)
        try barrier(f)
        q.makeAvailable(head: 16)
        q.notifyDevice()
        #expect(err.wait(timeoutMilliseconds: 5000))
        _ = submitEcho(q, pattern(8))
        q.notifyDevice()
        expectNothingUsed(q)
        try expectFreshConnectionServed(after: d)
    }
}
}
