// An NBD server for the network-storage tests of vhost-user-blk.

import Foundation
import Glibc
import GuestBed
import SystemdBed
import VhostUserKit

/// nbdkit serving a raw file (its `file` plugin) on a unix socket under a temporary directory. The
/// file outlives the server, so a test can stop the server, start it again on the same socket and
/// find the data, and check the file with `qemu-img compare`.
public final class NBDServer: @unchecked Sendable {
    public let directory: String
    public let image: String
    public let socket: String
    private var process: ChildProcess?
    private let log: Int32

    public static var unavailableReason: String? {
        (try? findInPath("nbdkit")) == nil ? "nbdkit is not installed (scripts/install-deps installs it)" : nil
    }

    /// A zero-filled `sizeBytes` image, served at once.
    public init(sizeBytes: Int) throws {
        if let reason = Self.unavailableReason { throw NetworkStorageUnavailable(reason) }
        directory = try makeTemporaryDirectory("vhu-nbd")
        image = directory + "/disk.raw"
        socket = directory + "/nbd.sock"
        let fd = open(image, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(sizeBytes)) == 0 else { throw NetworkStorageError("cannot make \(image)") }
        close(fd)
        log = open(directory + "/nbdkit.log", O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0o600)
        try start()
    }

    deinit {
        stop()
        close(log)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `nbd+unix:///?socket=SOCKET`: vhost-user-blk's `--nbd` and qemu's nbd driver take it.
    public var uri: String { "nbd+unix:///?socket=\(socket)" }

    /// Starts nbdkit (again) on the socket; returns once it accepts connections.
    public func start() throws {
        guard process == nil else { return }
        unlink(socket)
        let nbdkit = try findInPath("nbdkit")
        process = try ChildProcess(command: [nbdkit, "--foreground", "--unix", socket, "file", image], output: log)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if canConnect() { return }
            if process?.wait(timeout: .milliseconds(20)) != nil { break }
        }
        stop()
        throw NetworkStorageError("nbdkit did not start: \(tail(readText(directory + "/nbdkit.log")))")
    }

    /// Stops nbdkit (SIGTERM, then SIGKILL after 5 s); the image stays.
    public func stop() {
        guard let process else { return }
        process.kill(SIGTERM)
        if process.wait(timeout: .seconds(5)) == nil {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
        }
        self.process = nil
        unlink(socket)
    }

    /// The image's bytes at `offset`.
    public func imageBytes(at offset: Int, count: Int) -> [UInt8] {
        let fd = open(image, O_RDONLY)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        _ = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return out
    }

    private func canConnect() -> Bool { (try? UnixListener.connect(to: socket)) != nil }
}
