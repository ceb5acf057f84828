import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Resize requests on the resize socket and from the embedding program.
@Suite("Console resize")
struct ConsoleResizeTests {
    @Test("resize socket: \"resize COLS ROWS\" answers ok, updates cols/rows and sends RESIZE; bad lines get an error")
    func resizeSocket() throws {
        let controlPath = temporaryPath("resize")
        defer { unlink(controlPath) }
        let listener = try UnixListener(path: controlPath)
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null")))],
                                       resizeControl: listener.socket)
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        let client = try connectUnix(controlPath)
        #expect(writeAll(client.rawValue, Array("resize 120 40\nresize 0 5\nresize x y\nmove 1 2\nresize 90\n".utf8)))
        var replies = ""
        #expect(driver.turn {
            replies += String(decoding: readAvailable(client.rawValue), as: UTF8.self)
            return replies.split(separator: "\n").count == 5
        })
        let lines = replies.split(separator: "\n")
        #expect(lines.first == "ok")
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("error: ") })
        #expect(device.readConfig(offset: 0, count: 4) == [120, 0, 40, 0])
        #expect(driver.receivedControl().contains(.resize(id: 0, cols: 120, rows: 40)))
        // A second client, and a line far too long, which closes that client.
        let other = try connectUnix(controlPath)
        #expect(writeAll(other.rawValue, [UInt8](repeating: 0x61, count: 300)))
        var closed = false
        #expect(driver.turn {
            var byte: UInt8 = 0
            let n = recv(other.rawValue, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
            if n == 0 { closed = true }
            _ = readAvailable(other.rawValue)
            return closed
        })
        #expect(writeAll(client.rawValue, Array("resize 81 25\n".utf8)))
        #expect(driver.turn { device.currentSize == ConsoleSize(cols: 81, rows: 25) })
    }

    @Test("resize(to:) from another thread; the same size twice sends one RESIZE")
    func resizeFromProgram() throws {
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null")))])
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        device.resize(to: ConsoleSize(cols: 200, rows: 60))
        driver.harness.wait(milliseconds: 100)
        device.resize(to: ConsoleSize(cols: 200, rows: 60))
        driver.harness.wait(milliseconds: 100)
        let resizes = driver.receivedControl().filter { $0.event == VirtioConsole.Event.resize.rawValue }
        #expect(resizes == [.resize(id: 0, cols: 200, rows: 60)])
    }
}
