import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// The statusq: events the driver sends (LEDs, sounds, force feedback) go back to the host device.
@Suite("virtio-input statusq")
struct StatusQueueTests {
    @Test("a LED event from the driver is written back to the evdev device and its buffer completed with 0")
    func ledWrittenBack() throws {
        let bench = try InputBench()
        bench.status(InputEvent(type: EventType.led, code: 1, value: 1).bytes)
        bench.status(syn.bytes)
        bench.turn()
        #expect(bench.statusq.takeUsed().map(\.length) == [0, 0])
        #expect(bench.writtenBack() == [InputEvent(type: EventType.led, code: 1, value: 1), syn])
    }

    @Test("sound, repeat and force-feedback events are written back too")
    func otherStatusEvents() throws {
        let bench = try InputBench()
        let events = [InputEvent(type: EventType.snd, code: 1, value: 1), InputEvent(type: EventType.rep, code: 0, value: 250),
                      InputEvent(type: EventType.ff, code: 0x50, value: 1)]
        for e in events { bench.status(e.bytes) }
        bench.turn()
        #expect(bench.writtenBack() == events)
    }

    @Test("malformed statusq buffers are completed and ignored; the queue keeps serving")
    func malformedStatusBuffers() throws {
        let bench = try InputBench()
        bench.status([1, 2, 3])                     // short
        bench.status(InputEvent(type: EventType.led, code: 0, value: 1).bytes + [0, 0])  // long
        bench.status(InputEvent(type: EventType.key, code: KEY_A, value: 1).bytes)       // not a status type
        bench.status(InputEvent(type: EventType.led, code: 0x7f, value: 1).bytes)        // no such LED
        let writable = bench.statusq.memory.allocate(8)
        bench.statusq.submit([.writable(writable, 8)])                                    // no readable bytes
        bench.status(InputEvent(type: EventType.led, code: 2, value: 1).bytes)
        bench.turn()
        #expect(bench.statusq.takeUsed().map(\.length) == [0, 0, 0, 0, 0, 0])
        #expect(bench.writtenBack() == [InputEvent(type: EventType.led, code: 2, value: 1)])
    }

    @Test("a synthetic keyboard keeps the LED state the driver sets, for status")
    func syntheticKeepsLeds() throws {
        let bench = try InputBench(kind: .keyboard)
        let client = try ControlClient(path: bench.controlPath!)
        bench.status(InputEvent(type: EventType.led, code: 1, value: 1).bytes)
        bench.status(InputEvent(type: EventType.led, code: 0, value: 1).bytes)
        bench.status(InputEvent(type: EventType.led, code: 0, value: 0).bytes)
        bench.turn()
        #expect(client.command("status", bench) == "ok leds=2 pending=0 dropped=0")
    }
}
