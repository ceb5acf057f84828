import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// Hostile packets: a clear RST (never in answer to an RST), no crash, and the device keeps serving.
@Suite("vsock malformed packets")
struct VsockMalformedTests {
    @Test("Each broken header gets RST and the next good connection works")
    func brokenHeaders() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [8000]) }
        let driver = bench.driver
        let listener = try listenHost(bench.path, port: 8000)
        func header(_ op: UInt16 = 1, type: UInt16 = 1, length: UInt32 = 0, src: UInt64 = 3, port: UInt32) -> VsockHeader {
            var h = VsockHeader(srcCID: src, dstCID: 2, srcPort: port, dstPort: 8000, type: .stream, op: .request)
            h.op = op; h.type = type; h.length = length
            return h
        }
        let cases: [(String, [UInt8], UInt32)] = [
            ("unknown op", header(99, port: 1).bytes, 1),
            ("op 0", header(0, port: 2).bytes, 2),
            ("unknown type", header(type: 7, port: 3).bytes, 3),
            ("length beyond the buffer", header(5, length: 100, port: 4).bytes + [1, 2], 4),
            ("length beyond 64 KiB", header(5, length: 70_000, port: 5).bytes + [UInt8](repeating: 0, count: 70_000), 5),
            ("payload on a REQUEST", header(1, length: 2, port: 6).bytes + [1, 2], 6),
            ("RW on no connection", header(5, length: 1, port: 7).bytes + [1], 7),
            ("SHUTDOWN on no connection", header(4, port: 8).bytes, 8),
            ("RESPONSE on no connection", header(2, port: 9).bytes, 9),
        ]
        for (what, bytes, port) in cases {
            driver.sendRaw(bytes)
            #expect(driver.expect(.rst, port: port) != nil, "\(what)")
        }
        // Wrong source CID: RST to the guest's real CID.
        driver.sendRaw(header(src: 77, port: 10).bytes)
        let rst = try #require(driver.expect(.rst, port: 10))
        #expect(rst.header.dstCID == 3)
        // No answer to an RST, nor to a packet shorter than a header.
        driver.sendRaw(header(3, port: 11).bytes)
        driver.sendRaw([1, 2, 3])
        driver.turn(for: 50) { false }
        #expect(driver.received().isEmpty)
        #expect(acceptHost(listener) == nil)
        // Still serving.
        driver.send(.request, port: 12, to: 8000)
        #expect(driver.expect(.response, port: 12) != nil)
        #expect(bench.device.connectionCount == 1)
    }

    @Test("A connection to a CID that is neither the host nor a guest of the group: RST")
    func unknownCID() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        bench.driver.send(.request, port: 20, to: 1, cid: 9)
        #expect(bench.driver.expect(.rst, port: 20)?.header.srcCID == 9)
        bench.driver.send(.request, port: 21, to: 1, cid: 3)
        #expect(bench.driver.expect(.rst, port: 21) != nil)
    }

    @Test("A guest that offers no receive buffers stalls its own tx queue, not the device's memory")
    func noReceiveBuffers() throws {
        let path = temporaryPath()
        defer { removeSockets(path) }
        let device = try VsockDevice(guestCID: 3, host: HostSockets(path: path))
        let driver = try VsockDriver(device, queueSize: 1024, rxBuffers: 0)
        defer { driver.harness.finish() }
        // Requests to a closed port, each owing an RST: the device reads tx until 4096 answers wait.
        var sent = 0
        for round in 0..<4 {
            for i in 0..<1024 { driver.send(.request, port: UInt32(round * 1024 + i), to: 1) }
            sent += 1024
            driver.run()
            #expect(driver.recycleTransmit() == 1024)
        }
        for i in 0..<500 { driver.send(.request, port: UInt32(5000 + i), to: 1) }
        sent += 500
        driver.run()
        #expect(driver.recycleTransmit() == 0)  // stalled: no receive buffer for the answers
        for _ in 0..<200 { driver.offerReceive() }
        var rsts = 0
        #expect(driver.turn(for: 10_000) {
            let got = driver.received().filter { $0.op == .rst }.count
            rsts += got
            return rsts == sent
        })
    }
}
