import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// A listening unix stream socket: the daemon's end of the path a VMM connects to. It stays open for
/// the daemon's whole life, so frontends can disconnect and reconnect to the same socket file.
public final class UnixListener: Sendable {
    /// The filesystem path, when the daemon created the socket itself.
    public let path: String?
    public let socket: OwnedDescriptor

    /// The most bytes a socket path may have (sun_path holds 108 bytes including the terminating NUL).
    public static let maxPathBytes = 107

    /// Creates, binds and listens on `path`. A stale socket file left by a dead daemon is replaced;
    /// a socket another process still listens on is not. `type` is SOCK_STREAM or SOCK_SEQPACKET;
    /// `backlog` how many connections may wait to be accepted.
    public init(path: String, type: Int32 = Int32(SOCK_STREAM.rawValue), backlog: Int32 = 8) throws(UnixSocketError) {
        guard path.utf8.count <= Self.maxPathBytes else { throw .pathTooLong(path) }
        if Self.isLiveSocket(path, type: type) { throw .inUse(path) }
        unlink(path)
        let fd = OwnedDescriptor(Glibc.socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0))
        guard fd.rawValue >= 0 else { throw .system(SystemError("socket", errno: errno)) }
        var address = Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw .system(SystemError("bind \(path)", errno: errno)) }
        guard listen(fd.rawValue, backlog) == 0 else { throw .system(SystemError("listen \(path)", errno: errno)) }
        self.path = path
        self.socket = fd
    }

    /// Wraps a socket that is already listening (socket activation, `--fd`).
    public init(listening descriptor: OwnedDescriptor) {
        path = nil
        socket = descriptor
    }

    /// Accepts the next connection (blocking).
    public func accept() throws(UnixSocketError) -> OwnedDescriptor {
        while true {
            let fd = vhu_accept(socket.rawValue)
            if fd >= 0 { return OwnedDescriptor(fd) }
            if errno == EINTR || errno == ECONNABORTED { continue }
            throw .system(SystemError("accept", errno: errno))
        }
    }

    /// Connects to `path` (the front-end side, used by tests and benchmarks; a device's host side). A
    /// `nonBlocking` socket stays so, and fails with EAGAIN instead of waiting when the listener's
    /// backlog is full.
    public static func connect(to path: String, type: Int32 = Int32(SOCK_STREAM.rawValue),
                               nonBlocking: Bool = false) throws(UnixSocketError) -> OwnedDescriptor {
        guard path.utf8.count <= maxPathBytes else { throw .pathTooLong(path) }
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = OwnedDescriptor(Glibc.socket(AF_UNIX, type | flags, 0))
        var address = Self.address(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw .system(SystemError("connect \(path)", errno: errno)) }
        return fd
    }

    private static func isLiveSocket(_ path: String, type: Int32) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        return (try? connect(to: path, type: type)) != nil
    }

    private static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        return address
    }
}

/// Why a socket could not be set up.
public enum UnixSocketError: Error, Equatable, CustomStringConvertible {
    case pathTooLong(String)
    case inUse(String)
    case system(SystemError)

    public var description: String {
        switch self {
        case let .pathTooLong(p): "socket path is \(p.utf8.count) bytes long; unix sockets allow at most \(UnixListener.maxPathBytes): \(p)"
        case let .inUse(p): "another process is listening on \(p)"
        case let .system(error): error.description
        }
    }
}
