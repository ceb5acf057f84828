import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// The control socket's line protocol: every command, its events as the driver receives them, and the
/// replies to good and bad lines.
@Suite("vhost-user-input control protocol")
struct ControlProtocolTests {
    /// Runs `lines` on a fresh bench of `kind` with 256 eventq buffers; returns the replies and the events.
    func run(_ kind: SyntheticKind, _ lines: [String]) throws -> (replies: [String?], events: [InputEvent]) {
        let bench = try InputBench(kind: kind, queueSize: 256, maxBatch: 64)
        let client = try ControlClient(path: bench.controlPath!)
        bench.offer(256)
        let replies = lines.map { client.command($0, bench) }
        bench.turn()
        return (replies, bench.received())
    }

    @Test("key and btn: EV_KEY by name or number, held until sync")
    func keyAndSync() throws {
        let (replies, events) = try run(.keyboard, ["key KEY_A 1", "key 48 1", "sync", "key KEY_A 0", "key KEY_B 2"])
        #expect(replies == ["ok", "ok", "ok", "ok", "ok"])
        #expect(events == [key(KEY_A, 1), key(KEY_B, 1), syn])  // the last two wait for a sync
        let mouse = try run(.mouse, ["btn BTN_LEFT 1", "sync", "btn BTN_LEFT 0", "sync"])
        #expect(mouse.events == [key(BTN_LEFT, 1), syn, key(BTN_LEFT, 0), syn])
    }

    @Test("rel DX DY and wheel N: REL_X, REL_Y (zeros left out), REL_WHEEL")
    func relative() throws {
        let (replies, events) = try run(.mouse, ["rel 10 -5", "sync", "rel 0 3", "wheel -1", "sync"])
        #expect(replies.allSatisfy { $0 == "ok" })
        #expect(events == [rel(0, 10), rel(1, -5), syn, rel(1, 3), rel(8, -1), syn])
    }

    @Test("abs X Y: ABS_X, ABS_Y within the axis range; outside it, an error")
    func absolute() throws {
        let (replies, events) = try run(.tablet, ["abs 1000 2000", "sync", "abs 0 32768", "abs -1 0", "abs 32767 32767", "sync"])
        #expect(replies[0] == "ok" && replies[1] == "ok" && replies[4] == "ok")
        #expect(replies[2] == "error 32768 is outside axis 1's range 0...32767")
        #expect(replies[3]?.hasPrefix("error -1 is outside axis 0") == true)
        #expect(events == [abs(0, 1000), abs(1, 2000), syn, abs(0, 32767), abs(1, 32767), syn])
    }

    @Test("touch and untouch: multi-touch slot 0 with a tracking id, BTN_TOUCH, ABS_X/Y, each a batch")
    func touch() throws {
        let (replies, events) = try run(.touch, ["touch 100 200", "touch 110 210", "untouch", "untouch", "touch 5 6"])
        #expect(replies == ["ok", "ok", "ok", "error no finger is down", "ok"])
        let slot = abs(Axis.mtSlot, 0)
        #expect(events == [
            slot, abs(Axis.mtTrackingID, 0), abs(Axis.mtPositionX, 100), abs(Axis.mtPositionY, 200), key(0x14a, 1), abs(0, 100), abs(1, 200), syn,
            slot, abs(Axis.mtPositionX, 110), abs(Axis.mtPositionY, 210), abs(0, 110), abs(1, 210), syn,
            slot, abs(Axis.mtTrackingID, -1), key(0x14a, 0), syn,
            slot, abs(Axis.mtTrackingID, 1), abs(Axis.mtPositionX, 5), abs(Axis.mtPositionY, 6), key(0x14a, 1), abs(0, 5), abs(1, 6), syn,
        ])
    }

    @Test("type: each character pressed, SYN, released, SYN; shift held for capitals and symbols; escapes")
    func typeText() throws {
        let (replies, events) = try run(.keyboard, [#"type "hA!""#, #"type "\n\"\\""#])
        #expect(replies == ["ok", "ok"])
        let shift = KEY_LEFTSHIFT
        #expect(events == [
            key(KEY_H, 1), syn, key(KEY_H, 0), syn,
            key(shift, 1), key(KEY_A, 1), syn, key(KEY_A, 0), key(shift, 0), syn,
            key(shift, 1), key(2, 1), syn, key(2, 0), key(shift, 0), syn,          // ! is shift+1
            key(28, 1), syn, key(28, 0), syn,                                      // \n: KEY_ENTER
            key(shift, 1), key(40, 1), syn, key(40, 0), key(shift, 0), syn,        // ": shift+apostrophe
            key(43, 1), syn, key(43, 0), syn,                                      // \: KEY_BACKSLASH
        ])
    }

    @Test("event TYPE CODE VALUE: any declared event by name or number; SYN_REPORT ends the batch")
    func rawEvent() throws {
        let (replies, events) = try run(.keyboard, ["event EV_KEY KEY_A 1", "event 1 30 0", "event EV_SYN SYN_REPORT 0",
                                                    "event EV_LED LED_CAPSL 1", "event EV_REL REL_X 1", "event 99 0 0",
                                                    "event EV_KEY REL_X 1", "event EV_KEY 767 1"])
        #expect(replies[0..<4] == ["ok", "ok", "ok", "ok"])
        #expect(replies[4] == "error vhost-user keyboard has no EV_REL code 0")
        #expect(replies[5] == "error unknown event type 99")
        #expect(replies[6] == "error REL_X is not a code of type 1")
        #expect(replies[7] == "error vhost-user keyboard has no EV_KEY code 767")
        #expect(events == [key(KEY_A, 1), key(KEY_A, 0), syn])
    }

    @Test("status: the LED state, events waiting and batches dropped")
    func status() throws {
        let bench = try InputBench(kind: .keyboard)
        let client = try ControlClient(path: bench.controlPath!)
        #expect(client.command("key KEY_A 1", bench) == "ok")
        #expect(client.command("sync", bench) == "ok")
        #expect(client.command("status", bench) == "ok leds=0 pending=2 dropped=0")
        #expect(client.command("status now", bench) == "error usage: status")
    }

    @Test("bad lines get a clear error, add no event, and the connection keeps serving")
    func badLines() throws {
        let lines = ["", "jump 1 2", "key", "key KEY_A", "key KEY_A 1 2", "key KEY_NOPE 1", "key KEY_A 3", "key KEY_A x",
                     "key KEY_A 99999999999", "rel 1 2", "abs 1 2", "touch 1 2", "type hello", #"type "a"#, #"type "é""#,
                     #"type "\q""#, #"type "a\""#, "sync now", "key KEY_A 1"]
        let (replies, events) = try run(.keyboard, lines + ["sync"])
        let expected: [String] = [
            "error empty line",
            "error unknown command jump (key btn rel wheel abs touch untouch event sync type status)",
            "error usage: key NAME|CODE VALUE", "error usage: key NAME|CODE VALUE", "error usage: key NAME|CODE VALUE",
            "error unknown key KEY_NOPE", "error a key value is 0 (release), 1 (press) or 2 (repeat), not 3",
            "error x is not a 32-bit number", "error 99999999999 is not a 32-bit number",
            "error vhost-user keyboard has no EV_REL code 0", "error vhost-user keyboard has no EV_ABS code 0",
            "error vhost-user keyboard has no EV_ABS code 47",
            "error usage: type \"TEXT\"", "error usage: type \"TEXT\"",
            "error cannot type byte 195: printable ASCII, \\n and \\t only",
            "error unknown escape \\q", "error the text ends inside an escape",
            "error usage: sync", "ok", "ok",
        ]
        #expect(replies.map { $0 ?? "<none>" } == expected)
        #expect(events == [key(KEY_A, 1), syn])
    }

    @Test("a line longer than 4096 bytes is refused once, skipped to its end, and the next line served")
    func longLine() throws {
        let bench = try InputBench(kind: .keyboard)
        let client = try ControlClient(path: bench.controlPath!)
        client.send("key " + String(repeating: "x", count: 9000) + "\n")
        #expect(client.reply(turning: bench) == "error line longer than 4096 bytes")
        #expect(client.command("key KEY_A 1", bench) == "ok")
    }

    @Test("a batch beyond the longest accepted is refused until sync")
    func overlongBatch() throws {
        let (replies, _) = try run(.keyboard, Array(repeating: "key KEY_A 1", count: 65) + ["sync"])
        #expect(replies.prefix(64).allSatisfy { $0 == "ok" })
        #expect(replies[64] == "error the batch would exceed 64 events: send sync")
        #expect(replies[65] == "ok")
        // Many short batches in one line are fine.
        let typed = try run(.keyboard, ["type \"" + String(repeating: "ab", count: 40) + "\""])
        #expect(typed.replies == ["ok"])
        #expect(typed.events.count == 256)  // 320 events, for 256 buffers: the rest wait for more
        #expect(typed.events.prefix(4) == [key(KEY_A, 1), syn, key(KEY_A, 0), syn])
    }

    @Test("a line whose events do not fit beside those waiting for the guest is refused: busy, nothing dropped")
    func busy() throws {
        let bench = try InputBench(kind: .keyboard, bufferEvents: 128, maxBatch: 16)
        let client = try ControlClient(path: bench.controlPath!)
        #expect(client.command("type \"" + String(repeating: "a", count: 30) + "\"", bench) == "ok")  // 120 events held
        #expect(client.command("type \"abc\"", bench) == "error busy: 120 events wait for the guest's buffers, room for 8: retry later")
        #expect(client.command("type \"ab\"", bench) == "ok")
        bench.offer(64)
        bench.turn()
        #expect(bench.received().count == 64)
        #expect(client.command("status", bench) == "ok leds=0 pending=64 dropped=0")
    }

    @Test("several clients at once, and one that leaves mid-line does not disturb the others")
    func severalClients() throws {
        let bench = try InputBench(kind: .keyboard)
        bench.offer(16)
        let first = try ControlClient(path: bench.controlPath!)
        do {
            let leaving = try ControlClient(path: bench.controlPath!)
            #expect(leaving.command("key KEY_B 1", bench) == "ok")
            leaving.send("key KEY_")
        }
        let second = try ControlClient(path: bench.controlPath!)
        #expect(first.command("key KEY_A 1", bench) == "ok")
        #expect(second.command("sync", bench) == "ok")
        bench.turn()
        #expect(bench.received() == [key(KEY_B, 1), key(KEY_A, 1), syn])
    }

    @Test("pipelined lines sent in one write are each answered, in order")
    func pipelined() throws {
        let bench = try InputBench(kind: .mouse, queueSize: 256)
        bench.offer(200)
        let client = try ControlClient(path: bench.controlPath!)
        client.send((0..<50).map { "rel \($0 + 1) 0\nsync\n" }.joined())
        for _ in 0..<100 { #expect(client.reply(turning: bench) == "ok") }
        bench.turn()
        #expect(bench.received() == (0..<50).flatMap { [rel(0, Int32($0 + 1)), syn] })
    }
}
