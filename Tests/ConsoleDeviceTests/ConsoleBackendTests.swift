import CConsole
import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Every host backend kind, both directions, and ports of mixed kinds on one console.
@Suite("Console backends")
struct ConsoleBackendTests {
    /// Checks both directions of port `port`: guest output read by `hostRead`, host input written by
    /// `hostWrite` reaching the guest.
    static func roundTrip(_ driver: ConsoleDriver, port: Int, hostRead: () -> [UInt8], hostWrite: ([UInt8]) -> Void) {
        let out = streamBytes(3000, from: 0, seed: port)
        driver.transmit(port: port, out)
        var got: [UInt8] = []
        #expect(driver.turn { got += hostRead(); return got.count >= out.count })
        #expect(got == out)
        let input = streamBytes(5000, from: 7, seed: port + 9)
        hostWrite(input)
        #expect(driver.receive(port: port, expected: input.count) == input)
    }

    @Test("stdio: a pty pair stands in for the terminal; raw mode while served, both directions, SIGWINCH resizes")
    func stdio() throws {
        var name = [CChar](repeating: 0, count: 128)
        let master = vhu_console_open_pty(&name, name.count)
        let slave = open(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), O_RDWR | O_NOCTTY)
        #expect(master >= 0 && slave >= 0)
        defer { close(master); close(slave) }
        var ws = winsize(ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(master, UInt(TIOCSWINSZ), &ws) == 0)
        let endpoint = HostEndpoint.terminal(input: slave, output: slave)
        var attributes = termios()
        tcgetattr(slave, &attributes)
        #expect(attributes.c_lflag & tcflag_t(ECHO | ICANON) == 0, "the terminal is raw")
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: endpoint)])
        #expect(device.currentSize == ConsoleSize(cols: 100, rows: 30))
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        Self.roundTrip(driver, port: 0, hostRead: { readFile(master) }, hostWrite: { bytes in
            _ = bytes.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
        })
        // The window grows; SIGWINCH (here sent to this thread, which runs the group) brings a RESIZE.
        ws = winsize(ws_row: 50, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(master, UInt(TIOCSWINSZ), &ws) == 0)
        pthread_kill(pthread_self(), SIGWINCH)
        var control: [ConsoleControlMessage] = []
        #expect(driver.turn { control += driver.receivedControl(); return control.contains(.resize(id: 0, cols: 160, rows: 50)) })
        #expect(device.readConfig(offset: 0, count: 4) == [160, 0, 50, 0])
    }

    @Test("pty: a new pseudo-terminal with a symlink; a client opening it talks to the guest; its size is followed")
    func pty() throws {
        let link = temporaryPath("pty")
        defer { unlink(link) }
        let endpoint = try HostEndpoint.open(.pty(link: link))
        let path = try #require(endpoint.ptyPath)
        #expect(path.hasPrefix("/dev/pts/"))
        var target = [CChar](repeating: 0, count: 256)
        let n = readlink(link, &target, 255)
        #expect(n > 0 && String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == path)
        var options = ConsoleDevice.Options()
        options.ptySizeInterval = .milliseconds(10)
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: endpoint)], options: options)
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        let client = open(link, O_RDWR | O_NOCTTY | O_NONBLOCK)
        #expect(client >= 0)
        defer { close(client) }
        var attributes = termios()
        tcgetattr(client, &attributes)
        cfmakeraw(&attributes)
        tcsetattr(client, TCSANOW, &attributes)
        Self.roundTrip(driver, port: 0, hostRead: { readFile(client) }, hostWrite: { bytes in
            _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
        })
        var ws = winsize(ws_row: 33, ws_col: 111, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(client, UInt(TIOCSWINSZ), &ws) == 0)
        var control: [ConsoleControlMessage] = []
        #expect(driver.turn { control += driver.receivedControl(); return control.contains(.resize(id: 0, cols: 111, rows: 33)) })
    }

    @Test("unix: clients attach and detach at will; output written while none is attached waits for the next")
    func unix() throws {
        let path = temporaryPath("sock")
        defer { unlink(path) }
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                               .init(name: "serial", endpoint: HostEndpoint.open(.unix(path: path)))])
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        for round in 0..<3 {
            let early = Array("while detached \(round)\n".utf8)
            driver.transmit(port: 1, early)
            let client = try connectUnix(path)
            var got: [UInt8] = []
            #expect(driver.turn { got += readAvailable(client.rawValue); return got.count >= early.count })
            #expect(got == early)
            Self.roundTrip(driver, port: 1, hostRead: { readAvailable(client.rawValue) }, hostWrite: { #expect(writeAll(client.rawValue, $0)) })
        }
        #expect(device.recentErrors.isEmpty)
    }

    @Test("tcp: a client on 127.0.0.1 talks to the guest")
    func tcp() throws {
        let endpoint = try HostEndpoint.open(.tcp(host: "127.0.0.1", port: 0))
        let port = try #require(endpoint.boundPort)
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: endpoint)])
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(rc == 0)
        Self.roundTrip(driver, port: 0, hostRead: { readAvailable(fd) }, hostWrite: { #expect(writeAll(fd, $0)) })
    }

    @Test("file: guest output is appended to what the file held; ports of every kind side by side")
    func fileAndMixedPorts() throws {
        let logPath = temporaryPath("log"), socketPath = temporaryPath("sock")
        defer { unlink(logPath); unlink(socketPath) }
        let existing = open(logPath, O_WRONLY | O_CREAT, 0o600)
        _ = write(existing, "before\n", 7)
        close(existing)
        let device = try ConsoleDevice(ports: [
            .init(name: "", endpoint: HostEndpoint.open(.unix(path: socketPath))),
            .init(name: "log", endpoint: HostEndpoint.open(.file(path: logPath))),
            .init(name: "tty", endpoint: HostEndpoint.open(.pty(link: nil))),
        ])
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        let control = driver.handshake()
        #expect(control.contains(.name(id: 1, "log")) && control.contains(.name(id: 2, "tty")))
        #expect(control.contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 1)))
        driver.transmit(port: 1, Array("guest line\n".utf8))
        let log = open(logPath, O_RDONLY)
        defer { close(log) }
        #expect(readFile(log) == Array("before\nguest line\n".utf8))
    }

    @Test("--port parsing: every backend kind, and clear errors")
    func parsing() throws {
        #expect(try PortSpec.parse("name=a,backend=stdio") == PortSpec(name: "a", backend: .stdio))
        #expect(try PortSpec.parse("name=b,backend=pty,link=/tmp/x") == PortSpec(name: "b", backend: .pty(link: "/tmp/x")))
        #expect(try PortSpec.parse("backend=unix:/run/c.sock,name=c") == PortSpec(name: "c", backend: .unix(path: "/run/c.sock")))
        #expect(try PortSpec.parse("name=d,backend=tcp::4555") == PortSpec(name: "d", backend: .tcp(host: "127.0.0.1", port: 4555)))
        #expect(try PortSpec.parse("name=d,backend=tcp:0.0.0.0:4555") == PortSpec(name: "d", backend: .tcp(host: "0.0.0.0", port: 4555)))
        #expect(try PortSpec.parse("name=e,backend=file:/var/log/e") == PortSpec(name: "e", backend: .file(path: "/var/log/e")))
        for bad in ["name=a", "name=a,backend=serial", "name=a,backend=tcp:host", "name=a,backend=unix:", "name=a/b,backend=stdio",
                    "name=a,backend=stdio,link=/x", "name=a,backend=stdio,color=red", "nonsense"] {
            #expect(throws: PortSpecError.self) { try PortSpec.parse(bad) }
        }
        #expect(throws: ConsoleSetupError.self) {
            try ConsoleDevice(ports: [.init(name: "x", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                      .init(name: "x", endpoint: HostEndpoint.open(.file(path: "/dev/null")))])
        }
    }
}
