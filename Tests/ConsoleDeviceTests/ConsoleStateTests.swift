import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// DEVICE_STATE for the console: the handshake, the size, pending control messages and the bytes on
/// their way move to another daemon through the fake front-end's pipe; hostile states are refused
/// with nothing changed.
@Suite("Console state")
struct ConsoleStateTests {
    /// Port 0 logs to /dev/null; port 1 ("data") listens on a unix socket at `path`.
    static func device(_ path: String) throws -> ConsoleDevice {
        try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                  .init(name: "data", endpoint: HostEndpoint.open(.unix(path: path)))])
    }

    /// A console whose driver did the handshake and wrote to port 1 while no host client was attached:
    /// the bytes wait in the device. Returns its saved state.
    static func savedSource() throws -> [UInt8] {
        let path = temporaryPath("src")
        defer { unlink(path) }
        let device = try Self.device(path)
        let driver = try ConsoleDriver(device)
        _ = driver.handshake()
        device.resize(to: ConsoleSize(cols: 132, rows: 43))
        driver.post(VirtioConsole.transmitQueue(port: 1), Array("written before the migration".utf8))
        driver.run()
        driver.harness.finish()
        return try #require(try device.saveState()).encoded()
    }

    static func fixture(_ path: String) throws -> DeviceFixture<ConsoleDevice> {
        let device = try Self.device(path)
        return try DeviceFixture(device, queueSizes: Array(repeating: 16, count: device.queueCount))
    }

    @Test func portsAndBufferedOutputMoveToAnotherDaemon() throws {
        let bytes = try Self.savedSource()
        let path = temporaryPath("dst")
        defer { unlink(path) }
        let b = try Self.fixture(path)
        #expect(try b.frontend.loadDeviceState(bytes) == 0)
        #expect(try b.frontend.saveDeviceState().bytes == bytes)
        #expect(b.device.currentSize == ConsoleSize(cols: 132, rows: 43))
        // The guest's output reaches the host client of the new daemon.
        let client = try connectUnix(path)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        while received.count < 28, waitReadable(client.rawValue, timeoutMilliseconds: 5000) {
            let n = recv(client.rawValue, &chunk, chunk.count, 0)
            guard n > 0 else { break }
            received += chunk[0..<n]
        }
        #expect(String(decoding: received, as: UTF8.self) == "written before the migration")
    }

    @Test func hostileStatesAreRefusedWithNothingChanged() throws {
        let good = try Self.savedSource()
        let path = temporaryPath("dst")
        defer { unlink(path) }
        let b = try Self.fixture(path)
        let before = try b.frontend.saveDeviceState().bytes
        var hostile = try hostileDeviceStates(of: good)
        let payload = try DeviceState(decoding: good).payload
        // Another port name: the loading daemon is set up differently.
        let name = Array("data".utf8)
        let renamed = try #require(payload.indices.first { Array(payload[$0..<min(payload.count, $0 + 4)]) == name })
        var other = payload
        other[renamed] = UInt8(ascii: "D")
        hostile.append(("another port name", DeviceState(kind: "cons", version: 1, payload: other).encoded()))
        for (what, bytes) in hostile {
            #expect(try b.frontend.loadDeviceState(bytes) != 0, "\(what) was accepted")
            #expect(try b.frontend.saveDeviceState().bytes == before, "\(what) changed the device")
        }
    }
}
