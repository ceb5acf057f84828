import Foundation
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The vhost-user-input executable: its options, and a synthetic keyboard's control socket served
/// inside the daemon's sandbox while a front-end runs its queues.
@Suite("vhost-user-input daemon")
struct InputDaemonTests {
    @Test("--print-capabilities advertises evdev-path and no-grab for type input")
    func capabilities() throws {
        let daemon = try DaemonProcess(product: "vhost-user-input", ["--print-capabilities"])
        defer { daemon.stop() }
        #expect(daemon.waitForExit() == 0, "\(daemon.diagnostics)")
        let object = try JSONSerialization.jsonObject(with: Data(daemon.standardOutput.utf8)) as? [String: Any]
        #expect(object?["type"] as? String == "input")
        #expect(object?["features"] as? [String] == ["evdev-path", "no-grab"])
    }

    @Test("option mistakes and a missing evdev device end the daemon with one clear line", arguments: [
        ([], "exactly one of --evdev-path and --kind"),
        (["--kind", "mouse", "--evdev-path", "/dev/input/event0"], "exactly one of --evdev-path and --kind"),
        (["--kind", "joystick"], "joystick"),
        (["--kind", "mouse", "--no-grab"], "--no-grab goes with --evdev-path"),
        (["--evdev-path", "/nonexistent/event9"], "open /nonexistent/event9"),
    ])
    func startupErrors(arguments: [String], message: String) throws {
        let tmp = try TemporaryDirectory()
        let daemon = try DaemonProcess(product: "vhost-user-input", ["--socket-path", "\(tmp.path)/in.sock"] + arguments)
        defer { daemon.stop() }
        let status = try #require(daemon.waitForExit(), "still running: \(daemon.diagnostics)")
        #expect(status != 0 && status < 128, "\(daemon.diagnostics)")
        #expect(daemon.standardError.contains(message), "\(daemon.diagnostics)")
        #expect(inode(of: "\(tmp.path)/in.sock") == nil)
    }

    @Test("sandboxed daemon: control lines become eventq events, a bad line gets an error and serving goes on")
    func controlSocketThroughTheSandbox() throws {
        let tmp = try TemporaryDirectory()
        let control = "\(tmp.path)/control.sock"
        let daemon = try DaemonProcess(product: "vhost-user-input", ["--socket-path", "\(tmp.path)/in.sock", "--kind", "keyboard",
                                                                     "--control-socket", control])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(tmp.path)/in.sock")
        let connected = try ConnectedFrontend(socketPath: "\(tmp.path)/in.sock", queueSizes: [64, 64])
        // A round trip through the control thread: the bring-up's last queue start (which restarts the
        // group, handing back any buffer held) is done before the buffers are offered.
        _ = try connected.frontend.getQueueNum()
        let eventq = connected.queues[0]
        let buffers = (0..<8).map { _ in connected.memory.allocate(8) }
        for b in buffers { eventq.submit([.writable(b, 8)]) }
        eventq.notifyDevice()

        let client = try LineClient(path: control)
        #expect(try client.command("key KEY_NOPE 1") == "error unknown key KEY_NOPE")
        #expect(try client.command("key KEY_A 1") == "ok")
        #expect(try client.command("sync") == "ok")
        let used = try eventq.waitForUsed(2)
        #expect(used.map(\.length) == [8, 8])
        #expect(connected.memory.read(buffers[0], count: 8) == [1, 0, 30, 0, 1, 0, 0, 0])
        #expect(connected.memory.read(buffers[1], count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(try client.command("status") == "ok leds=0 pending=0 dropped=0")
        #expect(!daemon.standardError.contains("seccomp"), "\(daemon.diagnostics)")
    }
}

/// A blocking line client of a control socket.
final class LineClient {
    let socket: OwnedDescriptor
    private var pending: [UInt8] = []
    init(path: String) throws { socket = try UnixListener.connect(to: path) }

    func command(_ line: String) throws -> String {
        let bytes = Array((line + "\n").utf8)
        #expect(write(socket.rawValue, bytes, bytes.count) == bytes.count)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeFirst(newline + 1) }
                return String(decoding: pending[..<newline], as: UTF8.self)
            }
            guard waitReadable(socket.rawValue, timeoutMilliseconds: 5000) else { throw SystemError("no reply to \(line)", errno: ETIMEDOUT) }
            var chunk = [UInt8](repeating: 0, count: 1024)
            let n = read(socket.rawValue, &chunk, chunk.count)
            guard n > 0 else { throw SystemError("control socket closed", errno: EPIPE) }
            pending += chunk[..<n]
        }
    }
}
