import CConsole
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A port's host side once opened: the descriptors the port's bytes come from and go to. Opened at
/// start-up (before the daemon's sandbox), then used by the console's queue group alone.
public final class HostEndpoint: @unchecked Sendable {  // handed between the device and its running handler under a lock, used by one thread at a time
    public let kind: PortBackendKind
    /// Where the guest's input comes from and its output goes (-1: none), while they are attached.
    private let fixedInput: Int32, fixedOutput: Int32
    /// The listening socket of a unix or tcp backend.
    let listener: OwnedDescriptor?
    /// The client attached to the listener, if any.
    private(set) var client: OwnedDescriptor?
    /// The pty's path (pty backend).
    public let ptyPath: String?
    /// Descriptors this endpoint keeps open (a pty's slave keeps the master from hanging up).
    private let owned: [OwnedDescriptor]

    private init(kind: PortBackendKind, input: Int32, output: Int32, listener: OwnedDescriptor? = nil,
                 ptyPath: String? = nil, owned: [OwnedDescriptor] = []) {
        self.kind = kind
        fixedInput = input
        fixedOutput = output
        self.listener = listener
        self.ptyPath = ptyPath
        self.owned = owned
    }

    /// The descriptor host input is read from (-1: none now).
    var input: Int32 { listener != nil ? client?.rawValue ?? -1 : fixedInput }
    /// The descriptor guest output is written to (-1: none now).
    var output: Int32 { listener != nil ? client?.rawValue ?? -1 : fixedOutput }
    /// Whether output goes to a socket (written with send(2), never raising SIGPIPE).
    var isSocket: Bool { listener != nil }
    /// Whether a host peer is there to talk to: a client for a socket, always for the other kinds.
    var hasPeer: Bool { listener == nil || client != nil }
    /// The terminal whose window size the console follows (stdio on a terminal, a pty's master).
    var terminal: Int32? {
        switch kind {
        case .stdio: isatty(fixedOutput) == 1 ? fixedOutput : isatty(fixedInput) == 1 ? fixedInput : nil
        case .pty: fixedInput
        default: nil
        }
    }

    /// Accepts a waiting client (non-blocking); returns whether one attached.
    func acceptClient() -> Bool {
        guard let listener, client == nil else { return false }
        guard let fd = acceptNonBlocking(listener.rawValue) else { return false }
        client = fd
        return true
    }

    /// Closes the attached client (it hung up); the listener waits for the next one.
    func dropClient() { client = nil }

    // MARK: Opening

    /// Opens the host side `kind` describes.
    public static func open(_ kind: PortBackendKind) throws(ConsoleSetupError) -> HostEndpoint {
        switch kind {
        case .stdio: return terminal(input: STDIN_FILENO, output: STDOUT_FILENO)
        case let .pty(link): return try pty(link: link)
        case let .unix(path):
            do {
                let listener = try UnixListener(path: path)
                try setNonBlocking(listener.socket.rawValue)
                return HostEndpoint(kind: kind, input: -1, output: -1, listener: listener.socket)
            } catch let error as UnixSocketError {
                throw .init("unix:\(path): \(error)")
            } catch {
                throw .init("unix:\(path): \(error)")
            }
        case let .tcp(host, port): return try tcp(host: host, port: port)
        case let .file(path):
            let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw .init("file:\(path): \(SystemError.describe(errno))") }
            return HostEndpoint(kind: kind, input: -1, output: fd, owned: [OwnedDescriptor(fd)])
        }
    }

    /// A terminal-like pair of descriptors (the daemon's stdio, or a pty pair in tests): made
    /// non-blocking, and raw when `raw` and a terminal, until the process exits.
    public static func terminal(input: Int32, output: Int32, raw: Bool = true) -> HostEndpoint {
        TerminalMode.take(input, raw: raw)
        if output != input { TerminalMode.take(output, raw: false) }
        return HostEndpoint(kind: .stdio, input: input, output: output)
    }

    /// A new pseudo-terminal: the daemon keeps the master, and the slave open and raw so that guest
    /// output waits in it until a client opens it, and is never echoed back.
    static func pty(link: String?) throws(ConsoleSetupError) -> HostEndpoint {
        var name = [CChar](repeating: 0, count: 128)
        let master = vhu_console_open_pty(&name, name.count)
        guard master >= 0 else { throw .init("pty: \(SystemError.describe(errno))") }
        let masterFD = OwnedDescriptor(master)
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slave = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else { throw .init("pty: open \(path): \(SystemError.describe(errno))") }
        let slaveFD = OwnedDescriptor(slave)
        var attributes = termios()
        if tcgetattr(slave, &attributes) == 0 {
            cfmakeraw(&attributes)
            _ = tcsetattr(slave, TCSANOW, &attributes)
        }
        if let link {
            if let existing = try? symlinkTarget(link), !existing.isEmpty { unlink(link) }
            guard symlink(path, link) == 0 else { throw .init("pty: symlink \(link): \(SystemError.describe(errno))") }
        }
        return HostEndpoint(kind: .pty(link: link), input: master, output: master, ptyPath: path, owned: [masterFD, slaveFD])
    }

    private static func symlinkTarget(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    static func tcp(host: String, port: UInt16) throws(ConsoleSetupError) -> HostEndpoint {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let where_ = "tcp:\(host):\(port)"
        let resolved = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, resolved, &address.sin_addr) == 1 else { throw .init("\(where_): not an IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .init("\(where_): socket: \(SystemError.describe(errno))") }
        let socketFD = OwnedDescriptor(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw .init("\(where_): \(SystemError.describe(errno))") }
        return HostEndpoint(kind: .tcp(host: host, port: port), input: -1, output: -1, listener: socketFD)
    }

    private static func setNonBlocking(_ fd: Int32) throws(ConsoleSetupError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw .init("fcntl: \(SystemError.describe(errno))") }
    }

    /// The port a tcp endpoint listens on (tests listen on port 0's kernel-chosen port).
    public var boundPort: UInt16? {
        guard case .tcp = kind, let listener else { return nil }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener.rawValue, $0, &length) }
        }
        return rc == 0 ? UInt16(bigEndian: address.sin_port) : nil
    }
}

/// Why a port's host side could not be opened.
public struct ConsoleSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// accept(2) of a waiting connection, made non-blocking and close-on-exec (nil: none waiting).
func acceptNonBlocking(_ listener: Int32) -> OwnedDescriptor? {
    let fd = vhu_console_accept(listener)
    return fd >= 0 ? OwnedDescriptor(fd) : nil
}
