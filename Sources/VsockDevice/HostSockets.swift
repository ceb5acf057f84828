import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The host side of one guest's sockets, in the hybrid convention of Firecracker and cloud-hypervisor:
/// a guest connecting to the host (CID 2) on port P reaches a unix listener at `PATH_P` (a stream
/// socket for a stream connection, a SOCK_SEQPACKET socket for a seqpacket one); a host program
/// connects to `PATH` (stream) or `PATH.seqpacket` (SOCK_SEQPACKET), sends `CONNECT <port>\n` and is
/// answered `OK <assigned-port>\n` once the guest's listener on that port accepted.
public struct HostSockets: Sendable {
    public let path: String
    /// The listeners for host-initiated connections (nil when `PATH` could not be one, e.g. in tests
    /// that reach the guest only from its side).
    let streamListener: OwnedDescriptor?
    let seqpacketListener: OwnedDescriptor?

    /// Listens on `path` and `path.seqpacket` (non-blocking, for a group's epoll).
    public init(path: String, backlog: Int32 = 128) throws {
        self.path = path
        let stream = try UnixListener(path: path, backlog: backlog).socket
        let seqpacket = try UnixListener(path: Self.seqpacketPath(path), type: Int32(SOCK_SEQPACKET.rawValue), backlog: backlog).socket
        for fd in [stream, seqpacket] { _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK) }
        streamListener = stream
        seqpacketListener = seqpacket
    }

    /// The listener for host-initiated SEQPACKET connections.
    public static func seqpacketPath(_ path: String) -> String { path + ".seqpacket" }
    /// Where a guest's connection to host port `port` goes.
    public func portPath(_ port: UInt32) -> String { "\(path)_\(port)" }

    /// Connects to the host listener for a guest's connection to `port` (non-blocking; a full backlog
    /// refuses at once rather than stall the group).
    func connect(port: UInt32, type: VirtioVsock.SocketType) -> Result<OwnedDescriptor, UnixSocketError> {
        let socketType = type == .stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_SEQPACKET.rawValue)
        do { return .success(try UnixListener.connect(to: portPath(port), type: socketType, nonBlocking: true)) }
        catch { return .failure(error) }
    }

    /// Accepts a waiting host program, non-blocking; nil when none waits.
    static func accept(_ listener: OwnedDescriptor) -> OwnedDescriptor? {
        let fd = Glibc.accept(listener.rawValue, nil, nil)
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return OwnedDescriptor(fd)
    }

    /// Parses `CONNECT <port>` (with its newline) from the front of `line`; nil when malformed.
    public static func parseConnect(_ line: ArraySlice<UInt8>) -> UInt32? {
        let text = String(decoding: line, as: UTF8.self).trimmingSuffix()
        guard text.hasPrefix("CONNECT "), let port = UInt32(text.dropFirst(8)) else { return nil }
        return port
    }
}

extension String {
    fileprivate func trimmingSuffix() -> Substring {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" { s = s.dropLast() }
        return s
    }
}

/// A host program that connected to `PATH` and has not yet sent its whole `CONNECT` line.
final class HostClient {
    let socket: OwnedDescriptor
    let type: VirtioVsock.SocketType
    var watch: Watch?
    var line: [UInt8] = []
    static let maxLine = 32

    init(socket: OwnedDescriptor, type: VirtioVsock.SocketType) {
        self.socket = socket
        self.type = type
    }
}
