import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// Connection set-up both ways in the hybrid unix-socket convention, and refusals on both sides.
@Suite("vsock connections")
struct VsockConnectTests {
    @Test("The config space holds the guest CID; the device offers STREAM and SEQPACKET")
    func config() throws {
        let device = try VsockDevice(guestCID: 0x1234_5678, host: nil)
        #expect(device.readConfig(offset: 0, count: 8) == [0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0])
        #expect(device.readConfig(offset: 2, count: 4) == [0x34, 0x12, 0, 0])
        #expect(device.deviceFeatures == VirtioVsock.featureStream | VirtioVsock.featureSeqpacket)
        #expect(device.virtioDeviceID == 19 && device.queueGroups == [[0, 1, 2]])
        #expect(throws: (any Error).self) { try VsockDevice(guestCID: 2, host: nil) }
        #expect(throws: (any Error).self) { try device.writeConfig(offset: 0, bytes: [1]) }
    }

    @Test("The guest gets a transport reset when its queues first run")
    func transportResetAtStart() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        #expect(bench.driver.events() == [VirtioVsock.eventTransportReset])
        bench.driver.run()
        #expect(bench.driver.events() == [])
    }

    @Test("Guest to host port P reaches the listener PATH_P: RESPONSE, then bytes both ways")
    func guestConnects() throws {
        let bench = try Bench()
        defer { bench.cleanUp(ports: [5000]) }
        let listener = try listenHost(bench.path, port: 5000)
        let driver = bench.driver
        driver.send(.request, port: 1111, to: 5000)
        let response = try #require(driver.expect(.response, port: 1111))
        #expect(response.header.srcCID == 2 && response.header.srcPort == 5000 && response.header.dstCID == 3)
        #expect(response.header.bufAlloc == VsockDevice.Options().bufferBytes && response.header.fwdCnt == 0)
        let host = try #require(acceptHost(listener))
        driver.send(.rw, port: 1111, to: 5000, payload: Array("hello host".utf8))
        var got: [UInt8] = []
        #expect(driver.turn { got += readAvailable(host.rawValue); return got.count == 10 })
        #expect(String(decoding: got, as: UTF8.self) == "hello host")
        #expect(sendAll(host.rawValue, Array("hello guest".utf8)))
        let data = try #require(driver.expect(.rw, port: 1111))
        #expect(String(decoding: data.payload, as: UTF8.self) == "hello guest")
        #expect(data.header.srcPort == 5000 && data.header.type == VirtioVsock.SocketType.stream.rawValue)
    }

    @Test("Guest to a host port nobody listens on: RST")
    func guestRefused() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        bench.driver.send(.request, port: 1111, to: 4999)
        let rst = try #require(bench.driver.expect(.rst, port: 1111))
        #expect(rst.header.srcPort == 4999 && rst.header.srcCID == 2)
        #expect(bench.device.connectionCount == 0)
    }

    @Test("Host CONNECT P: REQUEST to guest port P; the guest's RESPONSE is answered OK <port> on the host socket")
    func hostConnects() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        let host = try connectHost(bench.path)
        #expect(sendAll(host.rawValue, Array("CONN".utf8)))
        driver.run()
        #expect(sendAll(host.rawValue, Array("ECT 52\n".utf8)))
        let request = try #require(driver.expect(.request, port: 52))
        #expect(request.header.srcCID == 2 && request.header.dstCID == 3 && request.header.srcPort >= 1 << 30)
        driver.send(.response, port: 52, to: request.header.srcPort)
        var line: [UInt8] = []
        #expect(driver.turn { line += readAvailable(host.rawValue); return line.last == UInt8(ascii: "\n") })
        #expect(String(decoding: line, as: UTF8.self) == "OK \(request.header.srcPort)\n")
        #expect(sendAll(host.rawValue, [1, 2, 3]))
        let data = try #require(driver.expect(.rw, port: 52))
        #expect(data.payload == [1, 2, 3])
    }

    @Test("Bytes a host program sends right after its CONNECT line reach the guest once it accepted")
    func dataRightAfterConnect() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        let host = try connectHost(bench.path)
        #expect(sendAll(host.rawValue, Array("CONNECT 56\nearly bytes".utf8)))
        let request = try #require(driver.expect(.request, port: 56))
        driver.send(.response, port: 56, to: request.header.srcPort)
        var got: [UInt8] = []
        #expect(driver.turn { got += driver.received().filter { $0.op == .rw }.flatMap(\.payload); return got.count >= 11 })
        #expect(String(decoding: got, as: UTF8.self) == "early bytes")
        #expect(String(decoding: readAvailable(host.rawValue), as: UTF8.self) == "OK \(request.header.srcPort)\n")
    }

    @Test("Host CONNECT to a port the guest refuses: the host socket is closed without OK")
    func hostRefused() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        let host = try connectHost(bench.path)
        #expect(sendAll(host.rawValue, Array("CONNECT 53\n".utf8)))
        let request = try #require(driver.expect(.request, port: 53))
        driver.send(.rst, port: 53, to: request.header.srcPort)
        #expect(driver.turn { peekState(host.rawValue) == 0 })
        #expect(bench.device.connectionCount == 0)
    }

    @Test("A malformed CONNECT line closes the host socket; the listener keeps serving")
    func malformedConnect() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        for line in ["HELLO 1\n", "CONNECT x\n", "CONNECT 99999999999\n", String(repeating: "A", count: 40)] {
            let host = try connectHost(bench.path)
            #expect(sendAll(host.rawValue, Array(line.utf8)))
            #expect(driver.turn { peekState(host.rawValue) == 0 }, "\(line)")
        }
        #expect(driver.received().isEmpty)
        let host = try connectHost(bench.path)
        #expect(sendAll(host.rawValue, Array("CONNECT 54\n".utf8)))
        #expect(driver.expect(.request, port: 54) != nil)
    }

    @Test("A host program that leaves before the guest answers: RST to the guest")
    func hostLeavesEarly() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        var host: OwnedDescriptor? = try connectHost(bench.path)
        #expect(sendAll(host!.rawValue, Array("CONNECT 55\n".utf8)))
        let request = try #require(bench.driver.expect(.request, port: 55))
        host = nil
        let rst = try #require(bench.driver.expect(.rst, port: 55))
        #expect(rst.header.srcPort == request.header.srcPort)
    }
}
