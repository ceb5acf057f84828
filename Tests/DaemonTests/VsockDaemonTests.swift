import Foundation
import Testing
import VhostUserKit
import VhostUserTesting
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

/// The vhost-user-vsock executable: its options, its host sockets inside the sandbox, and a new
/// connection after the daemon is killed and started again (the guest gets a transport reset).
@Suite("vhost-user-vsock daemon")
struct VsockDaemonTests {
    @Test("--print-capabilities says type vsock")
    func capabilities() throws {
        let daemon = try DaemonProcess(product: "vhost-user-vsock", ["--print-capabilities"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 0, "\(daemon.diagnostics)")
        let object = try JSONSerialization.jsonObject(with: Data(daemon.standardOutput.utf8)) as? [String: Any]
        #expect(object?["type"] as? String == "vsock")
    }

    @Test("option mistakes end the daemon with one clear line", arguments: [
        (["--uds-path", "/tmp/x"], "--guest-cid and --uds-path are required"),
        (["--guest-cid", "2", "--uds-path", "/tmp/x"], "--guest-cid: from 3"),
        (["--guest-cid", "3", "--uds-path", "/tmp/x", "--buffer-bytes", "10"], "--buffer-bytes"),
    ])
    func startupErrors(arguments: [String], message: String) throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(product: "vhost-user-vsock", ["--socket-path", "\(tmp.path)/v.sock"] + arguments)
        defer { daemon.stop() }
        let status = try #require(daemon.waitForExit(), "still running: \(daemon.diagnostics)")
        #expect(status != 0 && status < 128, "\(daemon.diagnostics)")
        #expect(daemon.standardError.contains(message), "\(daemon.diagnostics)")
    }

    /// A front-end with rx, tx and event buffers offered; returns it and the packets it got so far.
    final class Guest {
        let connected: ConnectedFrontend
        let cid: UInt64
        var rxBuffers: [UInt16: UInt64] = [:]
        var eventBuffers: [UInt16: UInt64] = [:]
        init(socket: String, cid: UInt64 = 3) throws {
            self.cid = cid
            connected = try ConnectedFrontend(socketPath: socket, queueSizes: [64, 64, 16])
            _ = try connected.frontend.getQueueNum()
            for _ in 0..<16 { let b = connected.memory.allocate(4096); rxBuffers[connected.queues[0].submit([.writable(b, 4096)])] = b }
            for _ in 0..<2 { let b = connected.memory.allocate(8); eventBuffers[connected.queues[2].submit([.writable(b, 8)])] = b }
            connected.queues[0].notifyDevice()
            connected.queues[2].notifyDevice()
        }
        func send(_ op: VirtioVsock.Op, port: UInt32, to peer: UInt32, cid peerCID: UInt64 = 2, payload: [UInt8] = []) {
            let header = VsockHeader(srcCID: cid, dstCID: peerCID, srcPort: port, dstPort: peer, type: .stream, op: op,
                                     length: UInt32(payload.count), bufAlloc: 65536, fwdCnt: 0)
            let b = connected.memory.allocate(44 + payload.count)
            connected.memory.write(header.bytes + payload, at: b)
            connected.queues[1].submit([.readable(b, 44 + payload.count)])
            connected.queues[1].notifyDevice()
        }
        func packet() throws -> (VsockHeader, [UInt8]) {
            let used = try connected.queues[0].waitForUsed(1)[0]
            let bytes = connected.memory.read(rxBuffers[UInt16(used.id)]!, count: Int(used.length))
            return (VsockHeader(bytes: bytes)!, Array(bytes[44...]))
        }
        func event() throws -> UInt32 {
            let used = try connected.queues[2].waitForUsed(1)[0]
            return connected.memory.read(eventBuffers[UInt16(used.id)]!, count: 4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        }
    }

    @Test("sandboxed daemon: guest and host connections, then SIGKILL, a new daemon, a transport reset and a new connection")
    func connectionsAcrossARestart() throws {
        let tmp = try TemporaryDirectory()
        let socket = "\(tmp.path)/d.sock", uds = "\(tmp.path)/v"
        let arguments = ["--socket-path", socket, "--guest-cid", "3", "--uds-path", uds]
        var daemon = try DaemonProcess(product: "vhost-user-vsock", arguments)
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(socket)")
        let listener = try UnixListener(path: "\(uds)_5000")
        var guest = try Guest(socket: socket)
        #expect(try guest.event() == VirtioVsock.eventTransportReset)
        guest.send(.request, port: 1, to: 5000)
        #expect(try guest.packet().0.operation == .response)
        let host = try listener.accept()
        guest.send(.rw, port: 1, to: 5000, payload: Array("through the sandbox".utf8))
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = recv(host.rawValue, &buffer, 64, 0)
        #expect(n > 0 && String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == "through the sandbox")
        // A host program's CONNECT reaches the guest.
        let client = try UnixListener.connect(to: uds)
        #expect(send(client.rawValue, "CONNECT 77\n", 11, 0) == 11)
        let request = try guest.packet().0
        #expect(request.operation == .request && request.dstPort == 77)

        daemon.send(SIGKILL)
        #expect(daemon.waitForExit() != nil)
        #expect(recv(host.rawValue, &buffer, 64, 0) == 0, "the host socket closes with the daemon")
        daemon = try DaemonProcess(product: "vhost-user-vsock", arguments)
        try daemon.waitForStandardError(containing: "listening on \(socket)")
        guest = try Guest(socket: socket)
        #expect(try guest.event() == VirtioVsock.eventTransportReset, "the restarted daemon resets the guest's transport")
        guest.send(.request, port: 2, to: 5000)
        #expect(try guest.packet().0.operation == .response)
        _ = try listener.accept()
        #expect(daemon.standardError.contains("SIGSYS") == false, "\(daemon.diagnostics)")
    }

    @Test("--vm twice with one group: two vhost-user sockets in one daemon, and guest 3 reaches guest 4's port")
    func twoVMsInOneGroup() throws {
        let tmp = try TemporaryDirectory()
        let config = "\(tmp.path)/vms.conf"
        let text = "# two guests\nguest-cid=4,socket=\(tmp.path)/b.sock,uds-path=\(tmp.path)/b,group=g\n"
        #expect(FileManager.default.createFile(atPath: config, contents: Data(text.utf8)))
        let daemon = try DaemonProcess(product: "vhost-user-vsock", ["--vm", "guest-cid=3,socket=\(tmp.path)/a.sock,uds-path=\(tmp.path)/a,group=g",
                                                                     "--config", config])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(tmp.path)/b.sock")
        try daemon.waitForStandardError(containing: "listening on \(tmp.path)/a.sock")
        let a = try Guest(socket: "\(tmp.path)/a.sock", cid: 3)
        let b = try Guest(socket: "\(tmp.path)/b.sock", cid: 4)
        a.send(.request, port: 30, to: 40, cid: 4)
        let request = try b.packet().0
        #expect(request.operation == .request && request.srcCID == 3 && request.srcPort == 30 && request.dstPort == 40)
        b.send(.response, port: 40, to: 30, cid: 3)
        #expect(try a.packet().0.operation == .response)
        a.send(.rw, port: 30, to: 40, cid: 4, payload: Array("vm to vm".utf8))
        let (header, payload) = try b.packet()
        #expect(header.operation == .rw && String(decoding: payload, as: UTF8.self) == "vm to vm")
    }

    @Test("VM specs: every key, and the mistakes refused")
    func vmSpecs() throws {
        #expect(try VsockVMSpec.parse("guest-cid=3,socket=/s,uds-path=/u,group=g") == VsockVMSpec(guestCID: 3, socket: "/s", udsPath: "/u", group: "g"))
        for bad in ["guest-cid=2,socket=/s,uds-path=/u", "socket=/s,uds-path=/u", "guest-cid=3,socket=/s,uds-path=/u,color=red", "guest-cid=3,socket"] {
            #expect(throws: VsockVMSpec.ParseError.self, "\(bad)") { try VsockVMSpec.parse(bad) }
        }
        let twice = [VsockVMSpec(guestCID: 3, socket: "/a", udsPath: "/a", group: nil), VsockVMSpec(guestCID: 3, socket: "/b", udsPath: "/b", group: nil)]
        #expect(throws: VsockVMSpec.ParseError.self) { try VsockVMSpec.validate(twice) }
    }
}
