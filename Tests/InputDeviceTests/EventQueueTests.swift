import CInput
import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The eventq: source events reach the driver in whole SYN_REPORT batches, wait while it offers no
/// buffers, and are dropped (whole, oldest first) only beyond the bound.
@Suite("virtio-input eventq")
struct EventQueueTests {
    @Test("a batch is delivered in order, each event in its own 8-byte buffer, as le16 type, le16 code, le32 value")
    func batchInOrder() throws {
        let bench = try InputBench()
        bench.offer(8)
        bench.send([key(KEY_A, 1), syn, key(KEY_A, 0), syn])
        #expect(bench.received() == [key(KEY_A, 1), syn, key(KEY_A, 0), syn])
        // The bytes themselves: EV_KEY (1), KEY_A (30), 1.
        #expect(key(KEY_A, 1).bytes == [1, 0, 30, 0, 1, 0, 0, 0])
        #expect(InputEvent(type: 3, code: 0, value: -2).bytes == [3, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff])
    }

    @Test("a batch without its SYN_REPORT yet is held back")
    func openBatchHeld() throws {
        let bench = try InputBench()
        bench.offer(8)
        bench.send([key(KEY_A, 1)])
        #expect(bench.received() == [])
        bench.send([syn])
        #expect(bench.received() == [key(KEY_A, 1), syn])
    }

    @Test("never half a batch: with fewer buffers than the batch has events, nothing is completed")
    func noHalfBatch() throws {
        let bench = try InputBench(SyntheticKind.tablet.description())
        bench.offer(2)
        bench.send([abs(0, 100), abs(1, 200), syn])
        #expect(bench.received() == [])
        #expect(bench.eventq.publishedUsedIndex == 0)
        bench.offer(1)
        bench.turn()
        #expect(bench.received() == [abs(0, 100), abs(1, 200), syn])
    }

    @Test("events wait while the driver offers no buffers and arrive, every batch, once it does")
    func bufferedUntilBuffers() throws {
        let bench = try InputBench()
        for i in 0..<20 { bench.send([key(KEY_A, Int32(i % 2)), syn]) }
        #expect(bench.received() == [])
        bench.offer(64)
        bench.turn()
        #expect(bench.received() == (0..<20).flatMap { [key(KEY_A, Int32($0 % 2)), syn] })
    }

    @Test("beyond the bound the oldest whole batches are dropped; the newest arrive intact")
    func boundDropsOldestBatches() throws {
        // 256 events held at most; 3-event batches: 85 fit, the first 15 of 100 go.
        let bench = try InputBench(SyntheticKind.mouse.description(), bufferEvents: 256, maxBatch: 16)
        for i in 0..<100 { bench.send([rel(0, Int32(i)), rel(1, -Int32(i)), syn]) }
        var got: [InputEvent] = []
        for _ in 0..<10 {
            bench.offer(63)
            bench.turn()
            got += bench.received()
        }
        #expect(got.count == 85 * 3)
        #expect(Array(got.prefix(3)) == [rel(0, 15), rel(1, -15), syn])
        #expect(Array(got.suffix(3)) == [rel(0, 99), rel(1, -99), syn])
        // Whole batches only: every batch is x, y, SYN.
        for batch in stride(from: 0, to: got.count, by: 3) {
            #expect(got[batch].code == 0 && got[batch + 1].code == 1 && got[batch + 2] == syn)
        }
    }

    @Test("a batch longer than the eventq goes in parts of a full ring each")
    func batchLongerThanRing() throws {
        let bench = try InputBench(SyntheticKind.keyboard.description(), queueSize: 4, maxBatch: 16)
        let batch = (1...9).map { key(UInt16($0), 1) } + [syn]
        bench.send(batch)
        var got: [InputEvent] = []
        for _ in 0..<3 {
            bench.offer(4)
            bench.turn()
            got += bench.received()
        }
        #expect(got == batch)
    }

    @Test("SYN_DROPPED discards the batch in progress and everything up to the next SYN_REPORT")
    func synDropped() throws {
        let bench = try InputBench()
        bench.offer(16)
        bench.send([key(KEY_A, 1), InputEvent(type: 0, code: SynCode.dropped, value: 0), key(KEY_B, 1), syn, key(KEY_H, 1), syn])
        #expect(bench.received() == [key(KEY_H, 1), syn])
    }

    @Test("events of types or codes the device does not declare are dropped; the rest still arrive")
    func undeclaredEventsDropped() throws {
        let bench = try InputBench(SyntheticKind.keyboard.description())
        bench.offer(16)
        bench.send([InputEvent(type: 0x1f, code: 1, value: 1), rel(0, 5), abs(0, 1), key(0x2ff, 1), key(KEY_A, 1), syn])
        #expect(bench.received() == [key(KEY_A, 1), syn])
    }

    @Test("an eventq buffer too small for an event is returned empty and the next one is used")
    func smallBufferReturnedEmpty() throws {
        let bench = try InputBench()
        bench.offer(1, size: 4)
        let used = bench.eventq.takeUsed()
        #expect(used.isEmpty)
        bench.turn()
        #expect(bench.eventq.takeUsed().map(\.length) == [0])
        bench.offer(2)
        bench.send([key(KEY_A, 1), syn])
        #expect(bench.received() == [key(KEY_A, 1), syn])
    }

    @Test("buffers held when the group stops go back with an empty SYN_REPORT; held events reach the next driver")
    func heldAcrossRestart() throws {
        let (deviceEnd, testEnd) = try socketPair()
        let device = InputDevice(description: SyntheticKind.keyboard.description(), source: .evdev(deviceEnd))
        do {
            let harness = try GroupHarness(device: device)
            let address = harness.queue(0).memory.allocate(8)
            harness.queue(0).memory.write([UInt8](repeating: 0xff, count: 8), at: address)
            harness.queue(0).submit([.writable(address, 8)])
            harness.run()
            harness.finish()
            // Drivers read every completed buffer as an event: it must not be stale bytes.
            #expect(harness.queue(0).takeUsed().map(\.length) == [8])
            #expect(harness.queue(0).memory.read(address, count: 8) == syn.bytes)
        }
        var bytes = [UInt8](repeating: 0, count: 48)
        bytes.withUnsafeMutableBytes { b in
            for (i, e) in [key(KEY_A, 1), syn].enumerated() {
                vhu_input_event_encode(vhu_input_event(type: e.type, code: e.code, value: e.value), b.baseAddress! + 24 * i)
            }
        }
        #expect(write(testEnd.rawValue, bytes, 48) == 48)
        let harness = try GroupHarness(device: device)
        harness.run()
        harness.wait(milliseconds: 0)
        let a = harness.queue(0).memory.allocate(16)
        harness.queue(0).submit([.writable(a, 8)])
        harness.queue(0).submit([.writable(a + 8, 8)])
        harness.run()
        #expect(harness.queue(0).takeUsed().count == 2)
        #expect(harness.queue(0).memory.read(a, count: 16) == key(KEY_A, 1).bytes + syn.bytes)
        harness.finish()
    }
}
