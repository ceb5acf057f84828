// A client of QEMU's machine protocol (QMP) on a unix socket: commands, their replies, and events.

import Foundation

/// One QMP connection, past the greeting and capability negotiation. One thread at a time.
public final class QMPClient {
    private let connection: UnixLineClient
    /// Events that arrived while a reply was awaited, oldest first.
    private var events: [[String: Any]] = []

    /// Connects to QEMU's `-qmp unix:PATH,server=on,wait=off` socket (retrying while QEMU starts).
    public init(path: String, timeout: Duration = .seconds(30)) throws {
        connection = try UnixLineClient(path: path, timeout: timeout)
        _ = try connection.readLine(timeout: timeout)  // {"QMP": {...}}
        _ = try execute("qmp_capabilities")
    }

    /// Runs `command` with `arguments` and returns its `return` value; throws on an `error` reply.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: Any] = [:], timeout: Duration = .seconds(30)) throws -> Any {
        var request: [String: Any] = ["execute": command]
        if !arguments.isEmpty { request["arguments"] = arguments }
        let text = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        var line = try connection.command(text, timeout: timeout)
        while true {
            let object = try Self.parse(line)
            if object["event"] != nil {
                events.append(object)
            } else if let error = object["error"] {
                throw GuestTestBedError("QMP \(command): \(error)")
            } else if let value = object["return"] {
                return value
            }
            line = try connection.readLine(timeout: timeout)
        }
    }

    /// Waits for an event named `name` whose data satisfies `predicate`, and returns its data.
    @discardableResult
    public func waitForEvent(_ name: String, timeout: Duration, where predicate: ([String: Any]) -> Bool = { _ in true }) throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while true {
            while !events.isEmpty {
                let event = events.removeFirst()
                let data = event["data"] as? [String: Any] ?? [:]
                if event["event"] as? String == name && predicate(data) { return data }
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw GuestTestBedError("no QMP event \(name) within \(timeout)") }
            events.append(try Self.parse(try connection.readLine(timeout: left)))
        }
    }

    private static func parse(_ line: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw GuestTestBedError("QMP: not an object: \(line)")
        }
        return object
    }
}
