import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// SEQPACKET: message boundaries (EOM) kept both ways through SOCK_SEQPACKET unix sockets.
@Suite("vsock seqpacket")
struct VsockSeqpacketTests {
    static let seq = Int32(SOCK_SEQPACKET.rawValue)
    static let sizes = [1, 2, 100, 4051, 4052, 4053, 8192, 30_000, 65_535, 65_536]

    /// Reads one message from a non-blocking seqpacket socket.
    static func receiveMessage(_ fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return n > 0 ? Array(buffer[0..<n]) : nil
    }

    @Test("Guest to host: each message of 1 B to 64 KiB, sent in 4 KiB pieces, arrives as one host message")
    func guestToHost() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [7000]) }
        let driver = bench.driver
        let listener = try listenHost(bench.path, port: 7000, type: Self.seq)
        driver.send(.request, port: 900, to: 7000, type: .seqpacket)
        let response = try #require(driver.expect(.response, port: 900))
        #expect(response.header.type == VirtioVsock.SocketType.seqpacket.rawValue)
        let host = try #require(acceptHost(listener))
        for (i, size) in Self.sizes.enumerated() {
            let message = pattern(size, seed: i)
            var offset = 0
            while offset < size {
                let piece = Array(message[offset..<min(size, offset + 4096)])
                offset += piece.count
                let last = offset == size
                driver.send(.rw, port: 900, to: 7000, type: .seqpacket,
                            flags: last ? VirtioVsock.seqEOM | (i % 2 == 0 ? VirtioVsock.seqEOR : 0) : 0, payload: piece)
                driver.run()
            }
            var got: [UInt8]?
            #expect(driver.turn { got = got ?? Self.receiveMessage(host.rawValue); return got != nil })
            let same = got == message
            #expect(same, "message of \(size) bytes, got \(got?.count ?? -1)")
            _ = driver.received()
        }
    }

    @Test("Host to guest: each host message becomes packets whose last carries EOM and EOR")
    func hostToGuest() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        let host = try connectHost(HostSockets.seqpacketPath(bench.path), type: Self.seq)
        #expect(send(host.rawValue, "CONNECT 77\n", 11, 0) == 11)
        let request = try #require(driver.expect(.request, port: 77))
        #expect(request.header.type == VirtioVsock.SocketType.seqpacket.rawValue)
        driver.send(.response, port: 77, to: request.header.srcPort, type: .seqpacket)
        var ok: [UInt8]?
        #expect(driver.turn { ok = ok ?? Self.receiveMessage(host.rawValue); return ok != nil })
        #expect(String(decoding: ok ?? [], as: UTF8.self) == "OK \(request.header.srcPort)\n")
        for (i, size) in Self.sizes.enumerated() {
            let message = pattern(size, seed: i)
            #expect(message.withUnsafeBytes { send(host.rawValue, $0.baseAddress, size, 0) } == size)
            var got: [UInt8] = []
            var flags: [UInt32] = []
            #expect(driver.turn {
                for p in driver.received() where p.op == .rw { got += p.payload; flags.append(p.header.flags) }
                return flags.last.map { $0 & VirtioVsock.seqEOM != 0 } ?? false
            })
            let same = got == message
            #expect(same, "message of \(size) bytes, got \(got.count)")
            #expect(flags.dropLast().allSatisfy { $0 == 0 } && flags.last == VirtioVsock.seqEOM | VirtioVsock.seqEOR)
        }
    }

    @Test("Without the SEQPACKET feature a seqpacket REQUEST is refused")
    func withoutFeature() throws {
        let bench = try Bench(features: VirtioVsock.featureStream | VirtioFeature.kitFeatures)
        defer { bench.cleanUp(ports: [7001]) }
        let _listener = try listenHost(bench.path, port: 7001, type: Self.seq)
        _ = _listener
        bench.driver.send(.request, port: 901, to: 7001, type: .seqpacket)
        #expect(bench.driver.expect(.rst, port: 901) != nil)
    }
}
