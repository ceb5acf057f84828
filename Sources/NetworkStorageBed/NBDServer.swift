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
    private var pid: pid_t?
    private var pidFile: String { directory + "/nbdkit.pid" }

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
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `nbd+unix:///?socket=SOCKET`: vhost-user-blk's `--nbd` and qemu's nbd driver take it.
    public var uri: String { "nbd+unix:///?socket=\(socket)" }

    /// Starts nbdkit (again) on the socket; returns once it accepts connections. nbdkit daemonizes
    /// (it returns once it listens): a child of the calling thread would die with that thread, and
    /// a host action's thread ends long before the server should.
    public func start() throws {
        guard pid == nil else { return }
        unlink(socket)
        unlink(pidFile)
        let result = try HostCommand.run(["nbdkit", "--unix", socket, "--pidfile", pidFile, "file", image], timeout: .seconds(30))
        guard result.status == 0 else { throw NetworkStorageError("nbdkit did not start:\n\(result.transcript)") }
        // The daemonized server writes its pid file after its parent returned.
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                self.pid = pid
                if canConnect() { return }
            }
            usleep(10_000)
        }
        stop()
        throw NetworkStorageError("nbdkit does not accept connections on \(socket)")
    }

    /// Stops nbdkit (SIGTERM, then SIGKILL after 5 s); the image stays.
    public func stop() {
        guard let pid else { return }
        self.pid = nil
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        while isRunning(pid) {
            if ContinuousClock.now > deadline { kill(pid, SIGKILL); break }
            usleep(10_000)
        }
        unlink(socket)
        unlink(pidFile)
    }

    /// Freezes nbdkit (SIGSTOP): connections stay open and nothing is answered, as with a hung server.
    public func pause() { if let pid { kill(pid, SIGSTOP) } }

    /// Lets a frozen nbdkit run again (SIGCONT).
    public func resume() { if let pid { kill(pid, SIGCONT) } }

    /// Whether `pid` is still running (a zombie is not: PID 1 may reap it late).
    private func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].dropFirst(2).hasPrefix("Z")
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
