import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// What survives a group restart, what a new front-end resets, and scale.
@Suite("vsock lifecycle")
struct VsockLifecycleTests {
    @Test("A group restart keeps connections; a front-end reset closes host sockets and resets the transport")
    func restartAndReset() throws {
        let path = temporaryPath()
        defer { removeSockets(path, ports: [6100]) }
        let device = try VsockDevice(guestCID: 3, host: HostSockets(path: path))
        let listener = try listenHost(path, port: 6100)
        var driver = try VsockDriver(device)
        #expect(driver.events() == [VirtioVsock.eventTransportReset])
        driver.send(.request, port: 1, to: 6100)
        _ = try #require(driver.expect(.response, port: 1))
        let host = try #require(acceptHost(listener))
        driver.harness.finish()
        // The same front-end restarts the group (e.g. a new memory table): the connection goes on.
        driver = try VsockDriver(device)
        #expect(driver.events() == [])
        #expect(sendAll(host.rawValue, [42]))
        #expect(driver.expect(.rw, port: 1)?.payload == [42])
        driver.harness.finish()
        // A packet owed to the guest when the group stops is delivered by the next one.
        driver = try VsockDriver(device, rxBuffers: 0)
        driver.send(.request, port: 2, to: 6100)
        driver.run()
        driver.harness.finish()
        driver = try VsockDriver(device)
        #expect(driver.expect(.response, port: 2) != nil)
        driver.harness.finish()
        // A new front-end: host socket closed, transport reset for the guest.
        device.reset()
        #expect(peekState(host.rawValue) == 0)
        #expect(device.connectionCount == 0)
        #expect(acceptHost(listener) != nil)  // the second connection's host end, now closed too
        driver = try VsockDriver(device)
        #expect(driver.events() == [VirtioVsock.eventTransportReset])
        driver.harness.finish()
    }

    @Test("1,000 concurrent connections to one host listener, bytes both ways on each")
    func thousandConnections() throws {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < 4096 { limit.rlim_cur = min(4096, limit.rlim_max); setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        let bench = try Bench(queueSize: 1024, rxBuffers: 512)
        defer { bench.cleanUp(ports: [6200]) }
        let driver = bench.driver
        let listener = try listenHost(bench.path, port: 6200, backlog: 2048)
        let count = 1000
        var responses = Set<UInt32>()
        var hosts: [OwnedDescriptor] = []
        for batch in stride(from: 0, to: count, by: 250) {
            for i in batch..<batch + 250 { driver.send(.request, port: UInt32(10_000 + i), to: 6200) }
            #expect(driver.turn {
                for p in driver.received() where p.op == .response { responses.insert(p.header.dstPort) }
                while let h = acceptHost(listener) { hosts.append(h) }
                return responses.count == batch + 250
            })
        }
        #expect(responses.count == count && bench.device.connectionCount == count)
        while let h = acceptHost(listener) { hosts.append(h) }
        #expect(hosts.count == count)
        // Each guest port says its number; each host socket echoes what it read; the guest checks.
        for i in 0..<count {
            driver.send(.rw, port: UInt32(10_000 + i), to: 6200, payload: withUnsafeBytes(of: UInt32(10_000 + i).littleEndian) { Array($0) })
            if i % 200 == 199 { driver.run() }
        }
        var echoed = 0
        #expect(driver.turn(for: 10_000) {
            for h in hosts { let got = readAvailable(h.rawValue); if !got.isEmpty { _ = sendAll(h.rawValue, got); echoed += 1 } }
            return echoed == count
        })
        var back: [UInt32: [UInt8]] = [:]
        #expect(driver.turn(for: 10_000) {
            for p in driver.received() where p.op == .rw { back[p.header.dstPort, default: []] += p.payload }
            return back.count == count
        })
        #expect(back.allSatisfy { port, bytes in bytes == withUnsafeBytes(of: port.littleEndian) { Array($0) } })
    }
}
