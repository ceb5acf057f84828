import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The console's resize requests, for host sides with no terminal of their own (a unix or tcp
/// client, a log file): a unix stream socket (`--resize-socket`) where a client writes lines
///
///     resize COLS ROWS
///
/// and gets `ok` or `error: WHY` back for each. Any number of clients may connect; a line longer than
/// `maxLineBytes` is an error that closes the connection.
final class ResizeControl {
    let listener: OwnedDescriptor
    var listenerWatch: Watch?
    var clients: [Client] = []

    static let maxLineBytes = 128

    final class Client {
        let socket: OwnedDescriptor
        var watch: Watch?
        var line: [UInt8] = []
        init(socket: OwnedDescriptor) { self.socket = socket }
    }

    /// Serves `listener` (made non-blocking: the group accepts only when it is ready).
    init(listener: OwnedDescriptor) {
        self.listener = listener
        _ = fcntl(listener.rawValue, F_SETFL, fcntl(listener.rawValue, F_GETFL) | O_NONBLOCK)
    }

    /// What a line asks for.
    enum Request: Equatable {
        case resize(ConsoleSize)
        case invalid(String)
    }

    static func parse(_ line: String) -> Request {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard words.first == "resize" else { return .invalid("unknown request \"\(words.first ?? "")\" (resize COLS ROWS)") }
        guard words.count == 3, let cols = UInt16(words[1]), let rows = UInt16(words[2]), cols > 0, rows > 0 else {
            return .invalid("resize COLS ROWS takes two numbers from 1 to 65535")
        }
        return .resize(ConsoleSize(cols: cols, rows: rows))
    }

    /// Accepts a waiting client, if any.
    func accept() -> Client? {
        acceptNonBlocking(listener.rawValue).map(Client.init)
    }

    /// Reads what `client` sent; returns its complete lines, or nil when it hung up or broke the
    /// line limit (then close it).
    static func read(_ client: Client) -> [String]? {
        var chunk = [UInt8](repeating: 0, count: 256)
        let n = recv(client.socket.rawValue, &chunk, chunk.count, Int32(MSG_DONTWAIT))
        if n < 0 { return errno == EAGAIN || errno == EINTR ? [] : nil }
        if n == 0 { return nil }
        client.line += chunk[0..<n]
        var lines: [String] = []
        while let newline = client.line.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: client.line[..<newline], as: UTF8.self))
            client.line.removeSubrange(...newline)
        }
        if client.line.count > maxLineBytes {
            reply(client, "error: line longer than \(maxLineBytes) bytes")
            return nil
        }
        return lines
    }

    static func reply(_ client: Client, _ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = send(client.socket.rawValue, bytes, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
    }
}
