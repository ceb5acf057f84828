import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// The daemon executables against a hostile front-end, measured from outside as an operator would:
/// CPU time, threads and descriptors from /proc, how long SIGTERM takes, whether the process lives.
@Suite("daemons against a hostile front-end, as processes")
struct HostileFrontendProcessTests {
    /// User plus system CPU time of `pid` in clock ticks (/proc/PID/stat fields 14 and 15).
    private func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return -1 }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    /// CPU time the process uses over one second, in milliseconds.
    private func cpuMillisecondsOverOneSecond(_ pid: pid_t) -> Int {
        let ticksPerSecond = sysconf(Int32(_SC_CLK_TCK))
        let before = cpuTicks(pid)
        usleep(1_000_000)
        return (cpuTicks(pid) - before) * 1000 / ticksPerSecond
    }

    private func descriptorTargets(_ pid: pid_t) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).sorted().map {
            "\($0) -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) ?? "?")
        }
    }

    private func startDaemon(_ product: String, _ extra: [String] = []) throws -> (DaemonProcess, String, TemporaryDirectory) {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/d.sock"
        let daemon = try DaemonProcess(product: product, ["--socket-path", path] + extra)
        try daemon.waitForStandardError(containing: "listening on \(path)")
        return (daemon, path, tmp)
    }

    enum Spin: String, CaseIterable, CustomStringConvertible {
        /// SET_VRING_BASE far beyond the available index: the queue breaks.
        case baseBeyondAvailable
        /// A kick descriptor that is the read end of a pipe whose writer is gone (EPOLLHUP forever).
        case hungUpKick
        /// A semaphore eventfd with a huge count as kick (readable forever, one at a time).
        case semaphoreKick
        var description: String { rawValue }
    }

    @Test("a broken queue or a kick that is always ready costs no CPU: the daemon sleeps until the front-end acts",
          arguments: Spin.allCases)
    func noSpin(spin: Spin) throws {
        let (daemon, path, tmp) = try startDaemon("vhost-user-rng")
        defer { daemon.stop() }
        do {
            let connection = try ConnectedFrontend(socketPath: path)
            let f = connection.frontend, q = connection.queue
            var keep: [OwnedDescriptor] = []
            switch spin {
            case .baseBeyondAvailable:
                try f.setVringBase(0, 100)
            case .hungUpKick:
                var fds: [Int32] = [-1, -1]
                #expect(pipe(&fds) == 0)
                close(fds[1])
                keep.append(OwnedDescriptor(fds[0]))
                try f.setVringKick(0, EventFD(adopting: keep[0]))
            case .semaphoreKick:
                let kick = try EventFD(semaphore: true)
                var huge: UInt64 = 1 << 62
                #expect(write(kick.rawValue, &huge, 8) == 8)
                try f.setVringKick(0, kick)
                keep.append(kick.descriptor)
            }
            _ = try f.getQueueNum()
            let used = cpuMillisecondsOverOneSecond(daemon.pid)
            #expect(used < 100, "the daemon used \(used) ms of CPU in one second\n\(daemon.diagnostics)")
            withExtendedLifetime((q, keep)) {}
        }
        try expectServed(try FakeFrontend.connect(to: path))
        withExtendedLifetime(tmp) {}
    }

    @Test("a malformed blk chain stops its queue; the daemon then sleeps even with requests queued behind it")
    func brokenBlockQueueSleeps() throws {
        let tmp = try TemporaryDirectory()
        let path = "\(tmp.path)/b.sock"
        let daemon = try DaemonProcess(product: "vhost-user-blk", ["--socket-path", path, "--null-size", "1M"])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(path)")
        let connection = try ConnectedFrontend(socketPath: path)
        let memory = connection.memory, q = connection.queue
        let status = memory.allocate(1)
        q.submit([.readable(0xdead_0000_0000, 16), .writable(status, 1)])  // outside guest memory
        q.submit([.readable(memory.allocate(16), 16), .writable(status, 1)])
        q.notifyDevice()
        try daemon.waitForStandardError(containing: "queue 0 stopped")
        let used = cpuMillisecondsOverOneSecond(daemon.pid)
        #expect(used < 100, "the daemon used \(used) ms of CPU in one second\n\(daemon.diagnostics)")
    }

    @Test("200 queue restarts leave threads and descriptors where they were, with every blk engine",
          arguments: ["io_uring", "threads", "inline"])
    func queueRestartsLeakNothing(engine: String) throws {
        let tmp = try TemporaryDirectory()
        let image = "\(tmp.path)/disk.img"
        #expect(FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20)))
        let path = "\(tmp.path)/b.sock"
        let daemon = try DaemonProcess(product: "vhost-user-blk", ["--socket-path", path, "--blk-file", image, "--engine", engine])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(path)")
        let connection = try ConnectedFrontend(socketPath: path)
        let f = connection.frontend, memory = connection.memory, q = connection.queue
        func readServed() throws {
            let header = memory.allocate(16), data = memory.allocate(512), status = memory.allocate(1)
            memory.write([0xff], at: status)
            q.submit([.readable(header, 16), .writable(data, 512), .writable(status, 1)])
            q.notifyDevice()
            _ = try q.waitForUsed(1)
            #expect(memory.read(status, count: 1) == [0])
        }
        try readServed()
        // The kinds of descriptor a queue (re)start makes; Dispatch's own signalfd and timerfd (the
        // resize watch) come and go on their own schedule.
        func queueDescriptors() -> [String] {
            descriptorTargets(daemon.pid).filter { $0.hasSuffix("[eventfd]") || $0.hasSuffix("[eventpoll]") || $0.hasSuffix("[io_uring]") }
        }
        /// The daemon's own threads (queue workers, I/O threads), by name; Dispatch's come and go.
        func queueThreads() -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/task")) ?? []).filter {
                ((try? String(contentsOfFile: "/proc/\(daemon.pid)/task/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("vhu-")
            }.count
        }
        let threads = queueThreads(), fds = queueDescriptors().count
        #expect(threads == (engine == "threads" ? 5 : 1))
        for _ in 0..<200 { try f.setVringKick(0, q.kick) }  // each one stops and restarts the queue
        _ = try f.getQueueNum()  // a round trip: every restart is done
        try readServed()
        #expect(queueThreads() == threads)
        #expect(queueDescriptors().count == fds, "\(descriptorTargets(daemon.pid))")
    }

    @Test("a call descriptor without a reader (EPIPE) does not kill the process with SIGPIPE")
    func noSigpipe() throws {
        let (daemon, path, tmp) = try startDaemon("vhost-user-rng")
        defer { daemon.stop() }
        do {
            let connection = try ConnectedFrontend(socketPath: path)
            let f = connection.frontend, memory = connection.memory, q = connection.queue
            var fds: [Int32] = [-1, -1]
            #expect(pipe(&fds) == 0)
            close(fds[0])
            let writer = OwnedDescriptor(fds[1])
            try f.setVringCall(0, EventFD(adopting: writer))
            q.submit([.writable(memory.allocate(64), 64)])
            q.notifyDevice()
            try daemon.waitForStandardError(containing: "queue 0 stopped")
        }
        try expectServed(try FakeFrontend.connect(to: path))
        withExtendedLifetime(tmp) {}
    }

    enum Stall: String, CaseIterable, CustomStringConvertible {
        /// Half a message header, then nothing.
        case halfMessage
        /// Requests sent without ever reading a reply, until the daemon's replies fill the socket.
        case unreadReplies
        var description: String { rawValue }
    }

    @Test("SIGTERM ends the daemon within a second whatever the front-end is doing", arguments: Stall.allCases)
    func sigtermWhileFrontendStalls(stall: Stall) throws {
        let (daemon, path, tmp) = try startDaemon("vhost-user-rng")
        defer { daemon.stop() }
        let f = try FakeFrontend.connect(to: path)
        switch stall {
        case .halfMessage:
            try f.sendRaw([UInt8](MessageHeader(request: FrontendRequest.getFeatures.rawValue, flags: .version1, size: 0).encoded().prefix(5)))
            try daemon.waitForStandardError(containing: "front-end connected")
        case .unreadReplies:
            let fd = f.channel.socket.rawValue
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let request = MessageHeader(request: FrontendRequest.getFeatures.rawValue, flags: .version1, size: 0).encoded()
            // Send until the daemon stops reading for half a second: it is then stuck sending replies
            // nobody reads.
            var sent = 0, stuck = false
            while sent < 100_000 && !stuck {
                if request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count {
                    sent += 1
                } else {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    stuck = poll(&p, 1, 500) == 0
                }
            }
            #expect(stuck, "the daemon kept reading \(sent) requests")
        }
        daemon.send(SIGTERM)
        // It acts on the signal within a second (the front-end dropped, the accept loop left); the
        // process teardown after that is not the front-end's to delay (a sanitizer's exit work is slow).
        try daemon.waitForStandardError(containing: "shutting down", timeout: .seconds(1))
        #expect(daemon.waitForExit(timeout: .seconds(5)) == 0, "\(daemon.diagnostics)")
        withExtendedLifetime((f, tmp)) {}
    }
}
