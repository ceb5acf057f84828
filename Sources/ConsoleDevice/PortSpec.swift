/// Where a port's host side goes, as `--port` spells it.
public enum PortBackendKind: Equatable, Sendable, CustomStringConvertible {
    /// The daemon's own standard input and output (raw mode while the daemon runs, when a terminal).
    case stdio
    /// A new pseudo-terminal; its path is logged and, with `link`, symlinked there.
    case pty(link: String?)
    /// A unix stream socket the daemon listens on; one client at a time attaches.
    case unix(path: String)
    /// A TCP socket the daemon listens on (an IPv4 address; 127.0.0.1 when the host part is empty).
    case tcp(host: String, port: UInt16)
    /// An append-only log of the guest's output; the guest gets no input.
    case file(path: String)

    public var description: String {
        switch self {
        case .stdio: "stdio"
        case let .pty(link): link.map { "pty (link \($0))" } ?? "pty"
        case let .unix(path): "unix:\(path)"
        case let .tcp(host, port): "tcp:\(host):\(port)"
        case let .file(path): "file:\(path)"
        }
    }
}

/// One port of the console: its name in the guest (`/dev/virtio-ports/NAME`) and its host side.
public struct PortSpec: Equatable, Sendable {
    public var name: String
    public var backend: PortBackendKind

    public init(name: String, backend: PortBackendKind) {
        self.name = name
        self.backend = backend
    }

    /// Parses `name=NAME,backend=KIND[,link=PATH]`, KIND being `stdio`, `pty`, `unix:PATH`,
    /// `tcp:[HOST]:PORT` or `file:PATH`.
    public static func parse(_ text: String) throws(PortSpecError) -> PortSpec {
        var name = "", backend: String?, link: String?
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let equals = field.firstIndex(of: "=") else { throw .invalid(text, "\"\(field)\" is not KEY=VALUE") }
            let key = field[..<equals], value = String(field[field.index(after: equals)...])
            switch key {
            case "name": name = value
            case "backend": backend = value
            case "link": link = value
            default: throw .invalid(text, "unknown key \"\(key)\" (name, backend, link)")
            }
        }
        guard name.utf8.count <= VirtioConsole.maxNameBytes, !name.utf8.contains(0), !name.contains("/") else {
            throw .invalid(text, "a port name has at most \(VirtioConsole.maxNameBytes) bytes, no NUL and no /")
        }
        guard let backend else { throw .invalid(text, "backend= is missing") }
        let kind = try parseBackend(backend, in: text)
        if link != nil, case .pty = kind {} else if link != nil { throw .invalid(text, "link= is for backend=pty only") }
        if case .pty = kind { return PortSpec(name: name, backend: .pty(link: link)) }
        return PortSpec(name: name, backend: kind)
    }

    private static func parseBackend(_ value: String, in text: String) throws(PortSpecError) -> PortBackendKind {
        if value == "stdio" { return .stdio }
        if value == "pty" { return .pty(link: nil) }
        guard let colon = value.firstIndex(of: ":") else {
            throw .invalid(text, "unknown backend \"\(value)\" (stdio, pty, unix:PATH, tcp:HOST:PORT, file:PATH)")
        }
        let rest = String(value[value.index(after: colon)...])
        switch value[..<colon] {
        case "unix" where !rest.isEmpty: return .unix(path: rest)
        case "file" where !rest.isEmpty: return .file(path: rest)
        case "tcp":
            guard let last = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: last)...]), port > 0 else {
                throw .invalid(text, "tcp:HOST:PORT needs a port number")
            }
            let host = String(rest[..<last])
            return .tcp(host: host.isEmpty ? "127.0.0.1" : host, port: port)
        default:
            throw .invalid(text, "unknown backend \"\(value)\" (stdio, pty, unix:PATH, tcp:HOST:PORT, file:PATH)")
        }
    }
}

public enum PortSpecError: Error, Equatable, CustomStringConvertible {
    case invalid(String, String)
    public var description: String {
        switch self {
        case let .invalid(text, why): "--port \(text): \(why)"
        }
    }
}
