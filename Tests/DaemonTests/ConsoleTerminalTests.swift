// vhost-user-console with its port 0 on the daemon's own terminal (a pty slave as stdin and stdout):
// raw while it runs, given back as it was on every way out.

import CConsole
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

@Suite("vhost-user-console's terminal")
struct ConsoleTerminalTests {
    /// A pty pair: the test keeps the master; the slave is the daemon's stdin and stdout.
    struct Terminal {
        let master: OwnedDescriptor, slave: OwnedDescriptor
        init() throws {
            var name = [CChar](repeating: 0, count: 128)
            let m = vhu_console_open_pty(&name, name.count)
            guard m >= 0 else { throw DaemonTestError("pty: errno \(errno)") }
            master = OwnedDescriptor(m)
            let s = open(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), O_RDWR | O_NOCTTY)
            guard s >= 0 else { throw DaemonTestError("open the pty's slave: errno \(errno)") }
            slave = OwnedDescriptor(s)
        }
        /// Whether the slave is in cooked mode with echo, and blocking: as a shell leaves it.
        var isCooked: Bool {
            var attributes = termios()
            tcgetattr(slave.rawValue, &attributes)
            return attributes.c_lflag & tcflag_t(ECHO | ICANON) == tcflag_t(ECHO | ICANON)
                && fcntl(slave.rawValue, F_GETFL) & O_NONBLOCK == 0
        }
    }

    @Test("raw while serving; restored after SIGTERM, SIGINT, SIGHUP and SIGQUIT", arguments: [SIGTERM, SIGINT, SIGHUP, SIGQUIT])
    func restoredOnSignal(_ signal: Int32) throws {
        let terminal = try Terminal()
        #expect(terminal.isCooked)
        let dir = try TemporaryDirectory()
        let daemon = try DaemonProcess(product: "vhost-user-console", ["--socket-path", "\(dir.path)/c.sock"],
                                       descriptors: [0: terminal.slave.rawValue, 1: terminal.slave.rawValue])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on")
        #expect(!terminal.isCooked, "the daemon's terminal is raw while it serves")
        daemon.send(signal)
        #expect(daemon.waitForExit(timeout: .seconds(10)) != nil)
        #expect(terminal.isCooked, "after signal \(signal) the terminal is as it was")
    }
}
