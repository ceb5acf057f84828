import CSystemd
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Where the front-end comes from.
enum ListenEndpoint: Sendable {
    /// A listening socket: accept front-ends one after another.
    case listener(UnixListener)
    /// An already connected socket (`--fd` of a connected socket): serve it once.
    case connection(OwnedDescriptor)

    /// Resolves the options and the environment, in order: `--fd`, `--socket-path`, systemd socket
    /// activation (LISTEN_FDS; with several sockets, the one named `vhost-user` in LISTEN_FDNAMES).
    static func resolve(_ options: DaemonOptions) throws -> ListenEndpoint {
        if let fd = options.fd { return try inherited(fd, origin: "--fd \(fd)") }
        if let path = options.socketPath { return .listener(try UnixListener(path: path)) }
        if let fd = try socketActivated() { return try inherited(fd, origin: "systemd socket activation") }
        throw StartupError("no socket: give --socket-path PATH or --fd N, or start the daemon through a systemd socket unit")
    }

    /// Wraps an inherited descriptor after checking it is a unix stream socket, and tells listening
    /// from connected sockets (SO_ACCEPTCONN).
    private static func inherited(_ fd: Int32, origin: String) throws -> ListenEndpoint {
        var type: Int32 = 0, accepting: Int32 = 0, domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw StartupError("\(origin): descriptor \(fd) is not a socket (\(SystemError.describe(errno)))")
        }
        length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length)
        guard type == Int32(SOCK_STREAM.rawValue), domain == AF_UNIX else {
            throw StartupError("\(origin): descriptor \(fd) is not a unix stream socket")
        }
        length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return accepting != 0 ? .listener(UnixListener(listening: OwnedDescriptor(fd))) : .connection(OwnedDescriptor(fd))
    }

    private static func socketActivated() throws -> Int32? {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return nil }
        var chosen = SD_LISTEN_FDS_START
        if let names {
            for i in 0..<Int(count) where names[i].map({ String(cString: $0) }) == "vhost-user" {
                chosen = SD_LISTEN_FDS_START + Int32(i)
            }
            for i in 0..<Int(count) { free(names[i]) }
            free(names)
        }
        // Descriptors we do not use must not leak into anything we start.
        for fd in SD_LISTEN_FDS_START..<(SD_LISTEN_FDS_START + count) where fd != chosen { close(fd) }
        return chosen
    }
}

/// A reason the daemon cannot start, printed as one line on stderr.
struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
