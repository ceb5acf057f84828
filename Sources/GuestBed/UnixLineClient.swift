// A client of a line protocol on a unix socket (a daemon's control socket): one line out, one reply
// line back, each wait bounded.

import Foundation
import Glibc

/// Connects to a unix stream socket and exchanges lines. One thread at a time.
public final class UnixLineClient {
    private let fd: Int32
    private var pending: [UInt8] = []

    /// Connects to `path`, retrying until `timeout` while the socket does not exist or refuses yet.
    public init(path: String, timeout: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw GuestTestBedError("socket: errno \(errno)") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                let bytes = Array(path.utf8.prefix(raw.count - 1))
                raw.copyBytes(from: bytes)
            }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 {
                self.fd = fd
                return
            }
            let error = errno
            close(fd)
            guard (error == ENOENT || error == ECONNREFUSED) && ContinuousClock.now < deadline else {
                throw GuestTestBedError("connect \(path): errno \(error)")
            }
            // Wait for the daemon to create its socket: poll(2) on nothing is a bounded pause between tries.
            _ = poll(nil, 0, 20)
        }
    }

    deinit { close(fd) }

    /// Sends `line` and returns the reply line (without its newline), waiting up to `timeout`.
    public func command(_ line: String, timeout: Duration = .seconds(10)) throws -> String {
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw GuestTestBedError("send to the control socket: errno \(errno)")
        }
        return try readLine(timeout: timeout)
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
