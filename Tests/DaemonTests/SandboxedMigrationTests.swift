import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// Live migration's messages served by daemon processes in their default sandbox: the dirty log is
/// mapped and written, and a device state leaves one vhost-user-gpio through a pipe and enters another.
@Suite("Migration in the sandbox")
struct SandboxedMigrationTests {
    static let setDirection: UInt16 = 3, getValue: UInt16 = 4, setValue: UInt16 = 5

    /// One request on `connection`'s requestq: (status, value).
    static func request(_ connection: ConnectedFrontend, _ type: UInt16, line: UInt16, value: UInt32 = 0) throws -> [UInt8] {
        var w = ByteWriter()
        w.u16(type); w.u16(line); w.u32(value)
        let r = connection.memory.allocate(8), s = connection.memory.allocate(2)
        connection.memory.write(w.bytes, at: r)
        connection.queues[0].submit([.readable(r, 8), .writable(s, 2)])
        connection.queues[0].notifyDevice()
        _ = try connection.queues[0].waitForUsed(1)
        return connection.memory.read(s, count: 2)
    }

    @Test("a gpio daemon logs its writes and hands its lines to another through DEVICE_STATE")
    func gpioStateMovesBetweenSandboxedDaemons() throws {
        let tmp = try TemporaryDirectory()
        let processes = try ["a", "b"].map { name in
            let p = try DaemonProcess(product: "vhost-user-gpio", ["--socket-path", "\(tmp.path)/\(name).sock", "--lines", "8"])
            try p.waitForStandardError(containing: "listening on \(tmp.path)/\(name).sock")
            return p
        }
        defer { processes.forEach { $0.stop() } }
        let a = try ConnectedFrontend(socketPath: "\(tmp.path)/a.sock", queueSizes: [16, 16])
        let log = try FakeDirtyLog(coveringBytes: a.memory.regions[0].guestPhysicalAddress + UInt64(a.memory.size))
        try a.frontend.startDirtyLogging(log, queues: a.queues)
        _ = log.takeDirtyPages()
        #expect(try Self.request(a, Self.setValue, line: 3, value: 1) == [0, 0])
        #expect(!log.takeDirtyPages().isEmpty, "the sandboxed daemon logged nothing: \(processes[0].diagnostics)")
        #expect(try Self.request(a, Self.setDirection, line: 3, value: 1) == [0, 0])
        for q in a.queues { _ = try a.frontend.getVringBase(q.index) }
        let (bytes, check) = try a.frontend.saveDeviceState()
        #expect(check == 0, "\(processes[0].diagnostics)")

        let b = try ConnectedFrontend(socketPath: "\(tmp.path)/b.sock", queueSizes: [16, 16])
        #expect(try b.frontend.loadDeviceState(bytes) == 0, "\(processes[1].diagnostics)")
        #expect(try Self.request(b, Self.getValue, line: 3) == [0, 1])
    }
}
