import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The simulated chip's control socket: a listening unix socket and its connections, served on the
/// queue group's thread through the group's watches (nothing happens while no group runs; the
/// connections wait). Each connection sends command lines and gets one reply line per command.
final class ControlServer {
    let listener: UnixListener
    weak var chip: SimulatedChip?
    private weak var events: (any GPIOChipEvents)?

    private struct Connection {
        let socket: OwnedDescriptor
        var pending: [UInt8] = []
    }
    private var connections: [Int32: Connection] = [:]
    private var chunk = [UInt8](repeating: 0, count: 512)

    /// The most connections served at once; more are closed at once.
    static let maxConnections = 16

    init(path: String) throws(UnixSocketError) {
        listener = try UnixListener(path: path)
        let flags = fcntl(listener.socket.rawValue, F_GETFL)
        _ = fcntl(listener.socket.rawValue, F_SETFL, flags | O_NONBLOCK)
    }

    func attach(_ events: any GPIOChipEvents) {
        self.events = events
        events.watch(listener.socket.rawValue)
        for fd in connections.keys { events.watch(fd) }
    }

    func detach() { events = nil }

    func ready(_ fd: Int32) {
        if fd == listener.socket.rawValue { acceptConnections() } else { serve(fd) }
    }

    private func acceptConnections() {
        while true {
            let fd = vhu_accept(listener.socket.rawValue)  // the listener does not block: EAGAIN ends the loop
            guard fd >= 0 else { return }
            let socket = OwnedDescriptor(fd)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            guard connections.count < Self.maxConnections else { continue }  // closed by `socket` going away
            connections[fd] = Connection(socket: socket)
            events?.watch(fd)
        }
    }

    private func serve(_ fd: Int32) {
        guard var connection = connections[fd] else { return }
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else { return close(fd) }
        connection.pending += chunk[0..<n]
        while let newline = connection.pending.firstIndex(of: UInt8(ascii: "\n")) {
            guard newline <= ControlCommand.maxLineBytes else { return refuseLongLine(fd) }
            let line = String(decoding: connection.pending[..<newline], as: UTF8.self)
            connection.pending.removeSubrange(...newline)
            if !reply(to: line, on: fd) { return close(fd) }
        }
        guard connection.pending.count <= ControlCommand.maxLineBytes else { return refuseLongLine(fd) }
        connections[fd] = connection
    }

    private func refuseLongLine(_ fd: Int32) {
        _ = send("error: command longer than \(ControlCommand.maxLineBytes) bytes", on: fd)
        close(fd)
    }

    /// Runs one command line; false when the reply could not be sent.
    private func reply(to line: String, on fd: Int32) -> Bool {
        guard let chip else { return send("error: no chip", on: fd) }
        do {
            return send(try chip.run(try ControlCommand.parse(Substring(line))), on: fd)
        } catch {
            return send("error: \(error)", on: fd)
        }
    }

    private func send(_ reply: String, on fd: Int32) -> Bool {
        var bytes = Array(reply.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    private func close(_ fd: Int32) {
        events?.unwatch(fd)
        connections[fd] = nil
    }
}
