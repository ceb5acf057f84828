import Testing
import VhostUserKit
import VhostUserTesting
@testable import GPIODevice

private typealias T = GPIOTestBench
private let rising: UInt32 = 1, falling: UInt32 = 2, both: UInt32 = 3, high: UInt32 = 4, low: UInt32 = 8

/// Line 1 is the input under test; line 0, its loopback partner, drives it.
@Suite("virtio-gpio eventq: edge and level interrupts, masking, and hostile buffers")
struct GPIOInterruptTests {
    @Test("rising edge: the buffer is used (VALID) only when the line rises; a fall does nothing")
    func risingEdge() throws {
        let bench = try GPIOTestBench()
        #expect(bench.enable(rising, line: 1) == T.ok)
        let buffer = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, false)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, true)
        let fired = bench.firedEvents([buffer])
        #expect(fired.count == 1 && fired[0].head == buffer.head && fired[0].length == 1 && fired[0].status == T.valid)
        // Masked now (no buffer): the fall is not latched for a rising trigger.
        bench.drive(output: 0, false)
        let next = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([next]).map(\.status) == [T.valid])
    }

    @Test("falling edge and both edges fire on the edges they name")
    func fallingAndBothEdges() throws {
        let bench = try GPIOTestBench()
        bench.enable(falling, line: 1)
        bench.enable(both, line: 3)
        let b1 = bench.queueEvent(line: 1), b3 = bench.queueEvent(line: 3)
        bench.drive(output: 0, true)
        bench.drive(output: 2, true)
        #expect(bench.firedEvents([b1, b3]).map(\.head) == [b3.head])
        bench.drive(output: 0, false)
        #expect(bench.firedEvents([b1, b3]).map(\.head) == [b1.head])
        let again = bench.queueEvent(line: 3)
        bench.drive(output: 2, false)
        #expect(bench.firedEvents([again]).map(\.status) == [T.valid])
    }

    @Test("an edge while masked is latched and delivered when the buffer comes (once)")
    func edgeLatchedWhileMasked() throws {
        let bench = try GPIOTestBench()
        bench.enable(rising, line: 1)
        bench.drive(output: 0, true)
        bench.drive(output: 0, false)
        bench.drive(output: 0, true)
        let first = bench.queueEvent(line: 1)
        #expect(bench.firedEvents([first]).map(\.status) == [T.valid])
        let second = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty, "one latch, however many edges")
        bench.drive(output: 0, false)
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([second]).map(\.status) == [T.valid])
    }

    @Test("level high fires while the level holds, again after each re-queue, and not once it is low")
    func levelHighRefires() throws {
        let bench = try GPIOTestBench()
        bench.enable(high, line: 1)
        let b = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([b]).map(\.status) == [T.valid])
        // Still high: each re-queue (unmask) fires at once.
        for _ in 0..<3 {
            let again = bench.queueEvent(line: 1)
            #expect(bench.firedEvents([again]).map(\.status) == [T.valid])
        }
        bench.drive(output: 0, false)
        let waiting = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([waiting]).map(\.status) == [T.valid])
    }

    @Test("level low fires while low: at once when the buffer comes to a low line")
    func levelLow() throws {
        let bench = try GPIOTestBench()
        bench.drive(output: 0, true)
        bench.enable(low, line: 1)
        let b = bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
        bench.drive(output: 0, false)
        #expect(bench.firedEvents([b]).map(\.status) == [T.valid])
        let again = bench.queueEvent(line: 1)
        #expect(bench.firedEvents([again]).map(\.status) == [T.valid])
    }

    @Test("a level is never latched: a pulse while masked is gone when the buffer comes")
    func levelNotLatched() throws {
        let bench = try GPIOTestBench()
        bench.enable(high, line: 1)
        bench.drive(output: 0, true)
        bench.drive(output: 0, false)
        bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
    }

    @Test("NONE returns the held buffer INVALID and discards a latched edge")
    func disableReturnsBufferAndDropsLatch() throws {
        let bench = try GPIOTestBench()
        bench.enable(rising, line: 1)
        let held = bench.queueEvent(line: 1)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 0).status == T.ok)
        let returned = bench.firedEvents([held])
        #expect(returned.count == 1 && returned[0].length == 1 && returned[0].status == T.invalid)
        // A latch from before NONE is discarded.
        bench.request(T.requestType.setIRQType, line: 1, value: rising)
        bench.drive(output: 0, true)
        bench.request(T.requestType.setIRQType, line: 1, value: 0)
        bench.request(T.requestType.setIRQType, line: 1, value: rising)
        bench.queueEvent(line: 1)
        #expect(bench.eventq.takeUsed().isEmpty)
    }

    @Test("a buffer for a line whose interrupt is not enabled comes back INVALID at once")
    func unmaskBeforeEnable() throws {
        let bench = try GPIOTestBench()
        let b = bench.queueEvent(line: 1)
        #expect(bench.firedEvents([b]).map(\.status) == [T.invalid])
    }

    @Test("a second buffer for the same line comes back INVALID; the first one stays and fires")
    func duplicateBuffer() throws {
        let bench = try GPIOTestBench()
        bench.enable(rising, line: 1)
        let first = bench.queueEvent(line: 1), second = bench.queueEvent(line: 1)
        #expect(bench.firedEvents([first, second]).map(\.head) == [second.head])
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([first]).map(\.head) == [first.head])
    }

    @Test("making the line an output or NONE disables its interrupt and returns the buffer INVALID")
    func directionChangeDisables() throws {
        for direction: UInt32 in [0, 1] {
            let bench = try GPIOTestBench()
            bench.enable(rising, line: 1)
            let b = bench.queueEvent(line: 1)
            bench.request(T.requestType.setDirection, line: 1, value: direction)
            #expect(bench.firedEvents([b]).map(\.status) == [T.invalid])
            // The trigger is gone: a buffer is refused.
            bench.request(T.requestType.setDirection, line: 1, value: 2)
            let after = bench.queueEvent(line: 1)
            #expect(bench.firedEvents([after]).map(\.status) == [T.invalid])
        }
    }

    @Test("hostile eventq buffers: wrong request sizes and lines come back INVALID, no response buffer with length 0; the device keeps serving")
    func hostileEventBuffers() throws {
        let bench = try GPIOTestBench()
        bench.enable(rising, line: 1)
        for size in [0, 1, 3, 64] {
            let b = bench.queueEvent(line: 1, requestSize: size)
            #expect(bench.firedEvents([b]).map(\.status) == [T.invalid], "request of \(size) bytes")
        }
        for line: UInt16 in [8, 0x100, .max] {
            let b = bench.queueEvent(line: line)
            #expect(bench.firedEvents([b]).map(\.status) == [T.invalid], "line \(line)")
        }
        bench.queueEvent(line: 1, responseSize: 0)
        #expect(bench.eventq.takeUsed().map(\.length) == [0])
        let good = bench.queueEvent(line: 1)
        bench.drive(output: 0, true)
        #expect(bench.firedEvents([good]).map(\.status) == [T.valid])
    }

    @Test("without VIRTIO_GPIO_F_IRQ, eventq buffers come back INVALID")
    func eventqWithoutFeature() throws {
        let bench = try GPIOTestBench(features: VirtioFeature.kitFeatures)
        let b = bench.queueEvent(line: 1)
        #expect(bench.firedEvents([b]).map(\.status) == [T.invalid])
    }

    @Test("a stopping group returns its held buffers INVALID; the latch and the trigger survive for the next group")
    func stopReturnsBuffers() throws {
        let layout = T.defaultLayout
        let chip = try SimulatedChip(layout: layout)
        let device = GPIODevice(chip: chip)
        do {
            let harness = try GroupHarness(device: device)
            let eventq = harness.queue(1), requestq = harness.queue(0)
            let memory = harness.memory
            func request(_ type: UInt16, _ line: UInt16, _ value: UInt32) {
                let r = memory.allocate(8), s = memory.allocate(2)
                memory.write(T.header(type, line: line, value: value), at: r)
                requestq.submit([.readable(r, 8), .writable(s, 2)])
                harness.run()
            }
            request(T.requestType.setDirection, 1, 2)
            request(T.requestType.setIRQType, 1, rising)
            let r = memory.allocate(2), s = memory.allocate(1)
            memory.write([1, 0], at: r)
            memory.write([0xee], at: s)
            eventq.submit([.readable(r, 2), .writable(s, 1)])
            harness.run()
            #expect(eventq.takeUsed().isEmpty)
            harness.finish()
            #expect(eventq.takeUsed().map(\.length) == [1])
            #expect(memory.read(s, count: 1) == [T.invalid])
        }
        // The next group: the trigger is still enabled, so a new buffer is held, and a rising edge fires it.
        let next = try GroupHarness(device: device)
        let memory = next.memory
        let r = memory.allocate(2), s = memory.allocate(1)
        memory.write([1, 0], at: r)
        next.queue(1).submit([.readable(r, 2), .writable(s, 1)])
        next.run()
        #expect(next.queue(1).takeUsed().isEmpty)
        let q = memory.allocate(8), st = memory.allocate(2)
        memory.write(T.header(T.requestType.setDirection, line: 0, value: 1), at: q)
        next.queue(0).submit([.readable(q, 8), .writable(st, 2)])
        let v = memory.allocate(8)
        memory.write(T.header(T.requestType.setValue, line: 0, value: 1), at: v)
        next.queue(0).submit([.readable(v, 8), .writable(st, 2)])
        next.run()
        #expect(next.queue(1).takeUsed().map(\.length) == [1])
        #expect(memory.read(s, count: 1) == [T.valid])
    }

    @Test("device reset disables every interrupt and puts the lines back")
    func resetForgets() throws {
        let bench = try GPIOTestBench()
        bench.enable(rising, line: 1)
        bench.drive(output: 0, true)
        bench.harness.finish()
        bench.device.reset()
        let harness = try GroupHarness(device: bench.device)
        let memory = harness.memory
        let r = memory.allocate(2), s = memory.allocate(1)
        memory.write([1, 0], at: r)
        harness.queue(1).submit([.readable(r, 2), .writable(s, 1)])
        harness.run()
        #expect(harness.queue(1).takeUsed().map(\.length) == [1])
        #expect(memory.read(s, count: 1) == [T.invalid])
        let q = memory.allocate(8), st = memory.allocate(2)
        memory.write(T.header(T.requestType.getDirection, line: 0, value: 0), at: q)
        harness.queue(0).submit([.readable(q, 8), .writable(st, 2)])
        harness.run()
        #expect(memory.read(st, count: 2) == [T.ok, 2])
    }
}
