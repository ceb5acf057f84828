import Foundation
import NetworkStorageBed
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two vhost-user-blk processes (sandboxed, as shipped) on one RBD image of a throwaway cluster.
@Suite(.enabled(if: CephCluster.unavailableReason == nil, "SKIPPED: \(CephCluster.unavailableReason ?? "")"))
struct NetworkBlockDaemonTests {
    @Test("a second daemon on a locked RBD image is refused; read-only or --force it starts; the lock goes with the first daemon's exit")
    func twoDaemonsOnOneImage() throws {
        let cluster = try CephCluster.shared()
        let spec = try cluster.createImage("two-daemons", megabytes: 4)
        let directory = try TemporaryDirectory()
        func daemon(_ name: String, _ extra: [String] = []) throws -> DaemonProcess {
            try DaemonProcess(product: "vhost-user-blk", ["--socket-path", "\(directory.path)/\(name).sock", "--rbd", spec,
                                                          "--ceph-conf", cluster.configFile] + extra)
        }
        let first = try daemon("first")
        defer { first.stop() }
        try first.waitForStandardError(containing: "listening on", timeout: .seconds(30))

        let second = try daemon("second")
        defer { second.stop() }
        #expect(second.waitForExit(timeout: .seconds(30)) == 1, "\(second.diagnostics)")
        #expect(second.standardError.contains("exclusive lock"), "\(second.diagnostics)")

        let reader = try daemon("reader", ["--read-only"])
        defer { reader.stop() }
        try reader.waitForStandardError(containing: "listening on", timeout: .seconds(30))
        let forced = try daemon("forced", ["--force"])
        defer { forced.stop() }
        try forced.waitForStandardError(containing: "listening on", timeout: .seconds(30))

        // A daemon that exits cleanly lets go of the lock at once: the next one need not wait for the
        // cluster to time the first out.
        first.send(SIGTERM)
        #expect(first.waitForExit(timeout: .seconds(10)) == 0, "\(first.diagnostics)")
        let next = try daemon("next")
        defer { next.stop() }
        try next.waitForStandardError(containing: "listening on", timeout: .seconds(10))
    }

    @Test("a daemon whose stderr is a pipe leaves the pipe blocking (Ceph's client makes it non-blocking, and other writers into it would lose lines)")
    func stderrPipeStaysBlocking() throws {
        let cluster = try CephCluster.shared()
        let spec = try cluster.createImage("stderr-pipe", megabytes: 4)
        let directory = try TemporaryDirectory()
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        defer { ends.forEach { close($0) } }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // The pipe's write end is the daemon's stderr; this process keeps it too, and the flags it reads
        // there are the ones the daemon's descriptor has (one open pipe, shared).
        let daemon = try DaemonProcess(product: "vhost-user-blk", ["--socket-path", "\(directory.path)/blk.sock", "--rbd", spec,
                                                                   "--ceph-conf", cluster.configFile], descriptors: [2: ends[1]])
        defer { daemon.stop() }
        var log = ""
        let deadline = ContinuousClock.now + .seconds(30)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !log.contains("listening on"), ContinuousClock.now < deadline {
            var entry = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 1000) > 0 else { continue }
            let n = read(ends[0], &chunk, chunk.count)
            if n <= 0 { break }
            log += String(decoding: chunk[..<n], as: UTF8.self)
        }
        try #require(log.contains("listening on"), "the daemon did not start: \(log)")
        #expect(fcntl(ends[1], F_GETFL) & O_NONBLOCK == 0)
    }
}
