// A client of a line protocol on a unix socket (a daemon's control socket): one line out, one reply
// line back, each wait bounded.

import Foundation
import Glibc
import VhostUserKit

/// Connects to a unix stream socket and exchanges lines. One thread at a time.
public final class UnixLineClient {
    private let socket: OwnedDescriptor
    private var fd: Int32 { socket.rawValue }
    private var pending: [UInt8] = []

    /// Connects to `path`, retrying until `timeout` while the socket does not exist or refuses yet.
    public init(path: String, timeout: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                socket = try UnixListener.connect(to: path)
                return
            } catch .system(let error) where (error.errno == ENOENT || error.errno == ECONNREFUSED) && ContinuousClock.now < deadline {
                // Wait for the daemon to create its socket: poll(2) on nothing is a bounded pause between tries.
                _ = poll(nil, 0, 20)
            } catch {
                throw GuestTestBedError("connect \(path): \(error)")
            }
        }
    }

    /// Sends `line` and returns the reply line (without its newline), waiting up to `timeout`.
    public func command(_ line: String, timeout: Duration = .seconds(10)) throws -> String {
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw GuestTestBedError("send to the control socket: errno \(errno)")
        }
        return try readLine(timeout: timeout)
    }

    /// Sends `line` and throws unless the reply is `ok`.
    public func expectOK(_ line: String, timeout: Duration = .seconds(10)) throws {
        let reply = try command(line, timeout: timeout)
        guard reply == "ok" else { throw GuestTestBedError("\(line): \(reply)") }
    }

    /// The next line the server sends.
    public func readLine(timeout: Duration) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeFirst(newline + 1) }
                return String(decoding: pending[..<newline], as: UTF8.self)
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw GuestTestBedError("no reply from the control socket within \(timeout)") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left.timeInterval * 1000) + 1) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw GuestTestBedError("the control socket closed") }
            pending += chunk[..<n]
        }
    }
}
