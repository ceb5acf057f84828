import CInput
import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The control socket of a synthetic device: clients connect, send `ControlInterpreter` lines and read
/// one reply per line. Served on the queue group's worker (its descriptors are group watches), so
/// events go straight into the group's `PendingEvents`. A client's lines are not read while replies to
/// earlier ones wait to be sent (its replies are never dropped, its lines never lost). Lines are read
/// while the device's queues run (a driver is up): before that, or between front-ends, they wait.
///
/// Used by one group's worker at a time: the device hands it over through its lock (hence
/// `@unchecked Sendable`); watches are made again by each group that starts.
public final class ControlServer: @unchecked Sendable {
    /// Clients served at once; another one is told so and closed.
    public static let maxClients = 16

    public let listener: UnixListener
    var interpreter: ControlInterpreter
    private var clients: [Client] = []
    private var listenerWatch: Watch?
    private var chunk = [UInt8](repeating: 0, count: 4096)

    final class Client {
        let socket: OwnedDescriptor
        var watch: Watch?
        var input: [UInt8] = []
        var output: [UInt8] = []
        /// The current line is too long: skip to its end.
        var discarding = false
        var closed = false
        init(socket: OwnedDescriptor) { self.socket = socket }
    }

    public init(listener: UnixListener, description: InputDeviceDescription) {
        self.listener = listener
        interpreter = ControlInterpreter(description: description)
    }

    /// Watches the listener and every client in `group` (a group that just started).
    func attach(to group: QueueGroup) {
        listenerWatch = try? group.watch(listener.socket.rawValue, for: .readable)
        for client in clients { watch(client, in: group) }
    }

    /// The group stopped: its watches are gone.
    func detach() {
        listenerWatch = nil
        for client in clients { client.watch = nil }
    }

    /// Serves a ready descriptor if it is one of the server's; returns whether it was.
    func handle(_ watch: Watch, in group: QueueGroup, host: inout InputDevice.HostSide) -> Bool {
        if watch == listenerWatch {
            accept(in: group)
            return true
        }
        guard let client = clients.first(where: { $0.watch == watch }) else { return false }
        if client.output.isEmpty { receive(client, host: &host) }
        flush(client)
        if client.closed && client.output.isEmpty {
            group.unwatch(watch)
            clients.removeAll { $0 === client }
        } else {
            try? group.change(watch, to: client.output.isEmpty ? .readable : .writable)
        }
        return true
    }

    private func accept(in group: QueueGroup) {
        let fd = vhu_accept_nonblocking(listener.socket.rawValue)
        guard fd >= 0 else { return }
        let client = Client(socket: OwnedDescriptor(fd))
        guard clients.count < Self.maxClients else {
            client.output = Array("error too many control clients (at most \(Self.maxClients))\n".utf8)
            flush(client)
            return
        }
        clients.append(client)
        watch(client, in: group)
    }

    private func watch(_ client: Client, in group: QueueGroup) {
        client.watch = try? group.watch(client.socket.rawValue, for: client.output.isEmpty ? .readable : .writable)
    }

    /// Reads what the client sent and runs its complete lines.
    private func receive(_ client: Client, host: inout InputDevice.HostSide) {
        let n = chunk.withUnsafeMutableBytes { recv(client.socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { client.closed = true }
        if n > 0 { client.input.append(contentsOf: chunk[0..<n]) }
        var start = 0
        while let newline = client.input[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if client.discarding {
                client.discarding = false
            } else {
                let line = String(decoding: client.input[start..<newline], as: UTF8.self)
                reply(client, interpreter.execute(Substring(line), into: &host.pending, leds: host.leds))
            }
            start = newline + 1
        }
        client.input.removeFirst(start)
        if client.input.count > ControlInterpreter.maxLineBytes {
            if !client.discarding { reply(client, "error line longer than \(ControlInterpreter.maxLineBytes) bytes") }
            client.discarding = true
            client.input.removeAll(keepingCapacity: true)
        }
    }

    private func reply(_ client: Client, _ text: String) {
        client.output.append(contentsOf: text.utf8)
        client.output.append(UInt8(ascii: "\n"))
    }

    /// Sends what it can of the client's replies.
    private func flush(_ client: Client) {
        while !client.output.isEmpty {
            let n = client.output.withUnsafeBytes { send(client.socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if n > 0 {
                client.output.removeFirst(n)
            } else {
                if n < 0 && errno != EAGAIN && errno != EINTR { client.closed = true; client.output.removeAll() }
                return
            }
        }
    }
}
