import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// VM-to-VM: two guests of one hub connect to each other.
@Suite("vsock between guests")
struct VsockHubTests {
    struct Pair {
        let a: VsockDriver, b: VsockDriver
        init() throws {
            let hub = VsockHub()
            a = try VsockDriver(VsockDevice(guestCID: 3, host: nil, hub: hub))
            b = try VsockDriver(VsockDevice(guestCID: 4, host: nil, hub: hub))
        }
        /// Turns both guests until `condition` holds.
        func turn(_ condition: () -> Bool) -> Bool {
            let deadline = now() + 5000
            while !condition() {
                if now() > deadline { return false }
                a.run(); b.run()
                a.harness.wait(milliseconds: 1); b.harness.wait(milliseconds: 1)
            }
            return true
        }
        func finish() { a.harness.finish(); b.harness.finish() }
    }

    @Test("Guest 3 connects to guest 4's port: REQUEST, RESPONSE, stream bytes both ways, RST ends it")
    func streamBetweenGuests() throws {
        let pair = try Pair()
        defer { pair.finish() }
        var fromA: [Packet] = [], fromB: [Packet] = []
        pair.a.send(.request, port: 3000, to: 500, cid: 4)
        #expect(pair.turn { fromB += pair.b.received(); return fromB.contains { $0.op == .request } })
        let request = try #require(fromB.first { $0.op == .request })
        #expect(request.header.srcCID == 3 && request.header.srcPort == 3000 && request.header.dstPort == 500 && request.header.dstCID == 4)
        pair.b.send(.response, port: 500, to: 3000, cid: 3)
        #expect(pair.turn { fromA += pair.a.received(); return fromA.contains { $0.op == .response } })
        let message = pattern(20_000)
        for i in stride(from: 0, to: message.count, by: 4000) {
            pair.a.send(.rw, port: 3000, to: 500, cid: 4, payload: Array(message[i..<min(message.count, i + 4000)]))
        }
        var got: [UInt8] = []
        #expect(pair.turn { for p in pair.b.received() where p.op == .rw { got += p.payload }; return got.count >= message.count })
        #expect(got == message)
        pair.b.send(.rw, port: 500, to: 3000, cid: 3, payload: [7, 7, 7])
        var back: [UInt8] = []
        #expect(pair.turn { for p in pair.a.received() where p.op == .rw { back += p.payload }; return back.count >= 3 })
        #expect(back == [7, 7, 7])
        pair.a.send(.rst, port: 3000, to: 500, cid: 4)
        var end: [Packet] = []
        #expect(pair.turn { end += pair.b.received(); return end.contains { $0.op == .shutdown || $0.op == .rst } })
    }

    @Test("Guest 4 refuses: guest 3 gets RST; a seqpacket message keeps its boundary between guests")
    func refusedAndSeqpacket() throws {
        let pair = try Pair()
        defer { pair.finish() }
        var fromA: [Packet] = [], fromB: [Packet] = []
        pair.a.send(.request, port: 3001, to: 501, cid: 4)
        #expect(pair.turn { fromB += pair.b.received(); return fromB.contains { $0.op == .request } })
        pair.b.send(.rst, port: 501, to: 3001, cid: 3)
        #expect(pair.turn { fromA += pair.a.received(); return fromA.contains { $0.op == .rst && $0.header.dstPort == 3001 } })

        fromA = []; fromB = []
        pair.a.send(.request, port: 3002, to: 502, cid: 4, type: .seqpacket)
        #expect(pair.turn { fromB += pair.b.received(); return fromB.contains { $0.op == .request } })
        pair.b.send(.response, port: 502, to: 3002, cid: 3, type: .seqpacket)
        #expect(pair.turn { fromA += pair.a.received(); return fromA.contains { $0.op == .response } })
        let message = pattern(10_000)
        pair.a.send(.rw, port: 3002, to: 502, cid: 4, type: .seqpacket, payload: Array(message[0..<4000]))
        pair.a.send(.rw, port: 3002, to: 502, cid: 4, type: .seqpacket, flags: VirtioVsock.seqEOM, payload: Array(message[4000...]))
        var got: [UInt8] = [], flags: [UInt32] = []
        #expect(pair.turn {
            for p in pair.b.received() where p.op == .rw { got += p.payload; flags.append(p.header.flags) }
            return (flags.last ?? 0) & VirtioVsock.seqEOM != 0
        })
        #expect(got == message)
    }

    @Test("Two devices cannot take one CID in a hub")
    func cidTaken() throws {
        let hub = VsockHub()
        _ = try VsockDevice(guestCID: 5, host: nil, hub: hub)
        #expect(throws: VsockDevice.SetupError.self) { try VsockDevice(guestCID: 5, host: nil, hub: hub) }
    }
}
