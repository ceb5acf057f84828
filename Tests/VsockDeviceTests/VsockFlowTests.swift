import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// Credit-based flow control both ways, shutdown in each direction, and the ops that only move credit.
@Suite("vsock flow control")
struct VsockFlowTests {
    /// A stream connection from guest port 1000 to host port `port`, established, with the host's end.
    static func connect(_ bench: Bench, port: UInt32 = 6000) throws -> (listener: OwnedDescriptor, host: OwnedDescriptor) {
        let listener = try listenHost(bench.path, port: port)
        bench.driver.send(.request, port: 1000, to: port)
        _ = try #require(bench.driver.expect(.response, port: 1000))
        return (listener, try #require(acceptHost(listener)))
    }

    /// The window reopens through a CREDIT_UPDATE, or through the credit fields of any packet (here the
    /// guest's own data): either way the host bytes that waited go out.
    @Test("Host to guest stops at the guest's credit and resumes when the guest's packets reopen it, nothing lost",
          arguments: [VirtioVsock.Op.creditUpdate, .rw])
    func hostToGuestCredit(reopenedBy op: VirtioVsock.Op) throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [6000]) }
        let driver = bench.driver
        driver.bufAlloc = 10_000
        let (_, host) = try Self.connect(bench)
        let sent = pattern(50_000)
        #expect(sendAll(host.rawValue, sent))
        var got: [UInt8] = []
        driver.turn(for: 300) { got += driver.received(consume: false).flatMap(\.payload); return got.count >= 10_000 }
        driver.turn(for: 100) { got += driver.received(consume: false).flatMap(\.payload); return false }
        #expect(got.count == 10_000)  // exactly the window, no byte beyond it
        // The guest read it all: its next packet reopens the window, a window at a time.
        while got.count < sent.count {
            driver.fwdCnt[1000] = UInt32(got.count)
            driver.send(op, port: 1000, to: 6000, payload: op == .rw ? [1] : [])
            let before = got.count
            driver.turn(for: 2000) { got += driver.received(consume: false).flatMap(\.payload); return got.count >= min(sent.count, before + 10_000) }
            guard got.count > before else { break }
        }
        #expect(got == sent)
    }

    /// 256 KiB: the connection's buffer (64 KiB at first) grows to hold the whole window.
    @Test("Guest to host through a host that does not read: the guest's credit runs out, fwd_cnt advances as the host reads",
          arguments: [UInt32(64 << 10), 256 << 10])
    func guestToHostCredit(window: UInt32) throws {
        var options = VsockDevice.Options()
        options.bufferBytes = window
        let bench = try Bench(options: options)
        defer { bench.cleanUp(ports: [6000]) }
        let driver = bench.driver
        let (_, host) = try Self.connect(bench)
        var small: Int32 = 4096
        setsockopt(host.rawValue, SOL_SOCKET, SO_RCVBUF, &small, 4)
        // Send until the host's socket buffers are full and the device holds the rest (within credit).
        var sent: [UInt8] = []
        var credit = Int(window)
        var lastFwd: UInt32 = 0
        var log: [Packet] = []
        for i in 0..<(Int(window) + (1 << 20)) / 4096 {  // the window and more than the socket takes
            let chunk = pattern(4096, seed: i)
            guard credit >= chunk.count else { break }
            driver.send(.rw, port: 1000, to: 6000, payload: chunk)
            sent += chunk
            credit -= chunk.count
            driver.run()
            log += driver.received()
            for p in log { lastFwd = p.header.fwdCnt; credit = Int(p.header.bufAlloc) - (sent.count - Int(lastFwd)) }
            log.removeAll()
        }
        #expect(credit < 4096)  // the guest ran out of credit: the host is not reading
        // A packet beyond the credit resets the connection; first read everything and check the bytes.
        var got: [UInt8] = []
        var sawUpdate = false
        #expect(driver.turn {
            got += readAvailable(host.rawValue)
            for p in driver.received() where p.op == .creditUpdate { sawUpdate = true; lastFwd = p.header.fwdCnt }
            return got.count == sent.count && sawUpdate
        })
        #expect(got == sent)
        #expect(lastFwd > 0)
        driver.send(.creditRequest, port: 1000, to: 6000)
        let update = try #require(driver.expect(.creditUpdate, port: 1000))
        #expect(update.header.fwdCnt == UInt32(sent.count) && update.header.bufAlloc == window)
    }

    @Test("A guest that sends beyond the credit it was given is reset")
    func beyondCredit() throws {
        var options = VsockDevice.Options()
        options.bufferBytes = 8192
        let bench = try Bench(options: options)
        defer { bench.cleanUp(ports: [6000]) }
        let (_, host) = try Self.connect(bench)
        var small: Int32 = 4096
        setsockopt(host.rawValue, SOL_SOCKET, SO_RCVBUF, &small, 4)
        for i in 0..<200 { bench.driver.send(.rw, port: 1000, to: 6000, payload: pattern(4096, seed: i)) ; if i % 16 == 0 { bench.driver.run() } }
        #expect(bench.driver.expect(.rst, port: 1000) != nil)
        #expect(bench.device.connectionCount == 0)
    }

    @Test("Guest SHUTDOWN(SEND): the host reads end of file after the bytes, and can still send")
    func guestShutdownSend() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [6000]) }
        let driver = bench.driver
        let (_, host) = try Self.connect(bench)
        driver.send(.rw, port: 1000, to: 6000, payload: [9, 8, 7])
        driver.send(.shutdown, port: 1000, to: 6000, flags: VirtioVsock.shutdownSend)
        var got: [UInt8] = []
        #expect(driver.turn { got += readAvailable(host.rawValue); return got.count == 3 && peekState(host.rawValue) == 0 })
        #expect(got == [9, 8, 7])
        #expect(sendAll(host.rawValue, [1, 2]))
        #expect(driver.expect(.rw, port: 1000)?.payload == [1, 2])
    }

    @Test("Host end of file: SHUTDOWN(SEND) to the guest; the guest's own SHUTDOWN then closes with RST")
    func hostShutdown() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [6000]) }
        let driver = bench.driver
        let (_, host) = try Self.connect(bench)
        #expect(sendAll(host.rawValue, [5, 5]))
        shutdown(host.rawValue, Int32(SHUT_WR))
        var log: [Packet] = []
        let shut = try #require(driver.expect(.shutdown, port: 1000, log: &log))
        #expect(shut.header.flags == VirtioVsock.shutdownSend)
        #expect(log.first?.payload == [5, 5])  // the bytes came before the shutdown
        driver.send(.rw, port: 1000, to: 6000, payload: [4])
        var got: [UInt8] = []
        #expect(driver.turn { got += readAvailable(host.rawValue); return got == [4] })
        driver.send(.shutdown, port: 1000, to: 6000, flags: VirtioVsock.shutdownBoth)
        #expect(driver.expect(.rst, port: 1000) != nil)
        #expect(driver.turn { peekState(host.rawValue) == 0 })
        #expect(bench.device.connectionCount == 0)
    }

    @Test("Guest SHUTDOWN(RECEIVE): the host socket is no longer read")
    func guestShutdownReceive() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [6000]) }
        let driver = bench.driver
        let (_, host) = try Self.connect(bench)
        driver.send(.shutdown, port: 1000, to: 6000, flags: VirtioVsock.shutdownReceive)
        driver.run()
        #expect(sendAll(host.rawValue, [1, 2, 3]))
        driver.turn(for: 100) { false }
        #expect(driver.received().filter { $0.op == .rw }.isEmpty)
        #expect(peekState(host.rawValue) == -Int(EAGAIN))  // still open
    }

    @Test("Guest RST closes the host socket; a host reset is reported to the guest as RST")
    func resets() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [6000, 6001]) }
        let driver = bench.driver
        let (_, host) = try Self.connect(bench)
        driver.send(.rst, port: 1000, to: 6000)
        #expect(driver.turn { peekState(host.rawValue) == 0 })
        #expect(bench.device.connectionCount == 0)
        // The host closes with unread data: the guest's next write meets a reset socket.
        let listener = try listenHost(bench.path, port: 6001)
        driver.send(.request, port: 1001, to: 6001)
        _ = try #require(driver.expect(.response, port: 1001))
        var other: OwnedDescriptor? = acceptHost(listener)
        driver.send(.rw, port: 1001, to: 6001, payload: [1])
        driver.turn(for: 50) { false }
        other = nil
        _ = other
        driver.send(.rw, port: 1001, to: 6001, payload: [2])
        #expect(driver.expect(.rst, port: 1001) != nil)
    }
}
