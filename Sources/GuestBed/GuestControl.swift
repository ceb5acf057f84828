// The host side of a guest run: code that acts while the guest runs (grows a disk image, restarts
// a daemon), in step with the guest through lines the guest script prints.
//
//     try GuestTestBed.run(daemons: [blk], modules: ["virtio_blk"], script: """
//             echo @@grow
//             while [ "$(cat /sys/block/vda/size)" = 131072 ]; do sleep 0.2; done
//             """, timeout: .seconds(60),
//         hostAction: { control in
//             try control.waitForLine("@@grow", timeout: .seconds(30))
//             truncate(image, 128 << 20)
//         })
//
// The host waits for the guest's lines on the guest's output port (a file QEMU writes, watched
// with inotify): it never sleeps to guess when the guest got somewhere. The other way round, the
// host action's `send` lines reach the script on its descriptor 3 (`read -r reply <&3`), so a
// guest can wait for the host to finish checking something while the devices are attached.

import Foundation
import Glibc

/// What a host action can do while the guest runs (see the file comment). One thread at a time.
public final class GuestControl: Sendable {
    private let daemons: DaemonSet
    private let output: OutputWatcher
    private let inputPath: String
    /// QEMU's QMP socket, for a `QMPClient`.
    public let qmpSocket: String

    init(daemons: DaemonSet, output: OutputWatcher, inputPath: String, qmpSocket: String) {
        self.daemons = daemons
        self.output = output
        self.inputPath = inputPath
        self.qmpSocket = qmpSocket
    }

    /// Sends `line` to the guest script, which reads it with `read -r VARIABLE <&3` (the guest's
    /// third serial port). It first waits (up to `timeout`) until the guest's /init has opened that
    /// port: what a serial port receives before the guest opens it is lost.
    public func send(_ line: String, timeout: Duration = .seconds(300)) throws {
        try output.waitUntilStarted(timeout: timeout)
        try Self.write(line, toInput: inputPath)
    }

    /// Writes `line` and a newline into the FIFO that QEMU's `pipe` chardev reads for the guest.
    static func write(_ line: String, toInput path: String) throws {
        let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw GuestTestBedError("cannot open the guest's input \(path): errno \(errno)") }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw GuestTestBedError("cannot write to the guest's input \(path): errno \(errno)")
        }
    }

    /// Waits until the guest script prints a line for which `predicate` is true and returns it.
    /// Lines are consumed in order: each wait only looks at the lines after the one the previous
    /// wait returned. Throws when `timeout` passes or the guest run ends first.
    @discardableResult
    public func waitForLine(timeout: Duration, where predicate: (String) -> Bool) throws -> String {
        try output.waitForLine(timeout: timeout, where: predicate)
    }

    /// Waits until the guest script prints exactly `line` (see `waitForLine(timeout:where:)`).
    public func waitForLine(_ line: String, timeout: Duration) throws {
        _ = try output.waitForLine(timeout: timeout) { $0 == line }
    }

    /// Consumes and returns the lines the guest has printed that no wait has looked at yet, so that
    /// the next wait sees only what the guest prints from now on.
    @discardableResult
    public func takeLines() -> [String] { output.takeLines() }

    /// Everything the guest has printed on its output port so far (markers included).
    public var outputSoFar: String { output.text }

    /// Kills daemon `index` (its process group) with `signal`, waits for it to exit, starts it
    /// again on the same socket and waits for its readiness line. QEMU reconnects to it when the
    /// daemon's `qemuChardevOptions` has `reconnect-ms`.
    public func restartDaemon(_ index: Int, signal: Int32 = SIGKILL, timeout: Duration = .seconds(30)) throws {
        try daemons.restart(index, signal: signal, timeout: timeout)
    }

    /// Waits until daemon `index` (its current incarnation) prints a line containing `text`, e.g.
    /// that the front-end has reconnected after `restartDaemon`.
    public func waitForDaemonLine(_ index: Int, containing text: String, timeout: Duration = .seconds(30)) throws {
        try daemons.waitForLine(index, containing: text, timeout: timeout)
    }

    /// Sends `signal` (e.g. SIGHUP) to daemon `index`.
    public func signalDaemon(_ index: Int, _ signal: Int32) { daemons.signal(index, signal) }

    /// What daemon `index` has printed so far, its restarted incarnations' output first.
    public func daemonLog(_ index: Int) -> String { daemons.logs[index] }

    /// The PCIe root port the bed gives hotplugged daemon `index`.
    static func hotplugPort(_ index: Int) -> String { "hotplug\(index)" }

    /// Plugs hotplugged daemon `index` (`GuestDaemon.hotplugged`) into the running guest over QMP:
    /// adds its socket chardev with the daemon's `qemuChardevOptions` (e.g. `,reconnect-ms=500`),
    /// waits until the chardev is connected, then adds its device to its root port; the guest's
    /// kernel finds it through PCI hotplug.
    public func hotplugDaemon(_ index: Int, timeout: Duration = .seconds(30)) throws {
        let daemon = daemons.daemons[index]
        let qmp = try QMPClient(path: qmpSocket, timeout: timeout)
        let chardev = "c\(index)"
        try humanCommand(qmp, "chardev-add socket,id=\(chardev),path=\(daemons.sockets[index])\(daemon.qemuChardevOptions)")
        let deadline = ContinuousClock.now + timeout
        while !(try chardevConnected(qmp, chardev)) {
            guard ContinuousClock.now < deadline else {
                throw GuestTestBedError("chardev \(chardev) did not connect to \(daemons.sockets[index]) within \(timeout)")
            }
            usleep(20_000)
        }
        try humanCommand(
            qmp, "device_add \(daemon.qemuDevice),id=d\(index),chardev=\(chardev),bus=\(Self.hotplugPort(index))\(daemon.qemuDeviceOptions)")
    }

    /// Unplugs what `hotplugDaemon(index)` plugged in: removes the device (the guest's kernel
    /// releases it; QEMU reports DEVICE_DELETED) and then its chardev, so that it can be plugged
    /// in again.
    public func unplugDaemon(_ index: Int, timeout: Duration = .seconds(30)) throws {
        let qmp = try QMPClient(path: qmpSocket, timeout: timeout)
        try qmp.execute("device_del", ["id": "d\(index)"])
        try qmp.waitForEvent("DEVICE_DELETED", timeout: timeout) { $0["device"] as? String == "d\(index)" }
        try qmp.execute("chardev-remove", ["id": "c\(index)"])
    }

    /// Runs a monitor command line (its options as on QEMU's command line); its output is an error.
    private func humanCommand(_ qmp: QMPClient, _ line: String) throws {
        let output = try qmp.execute("human-monitor-command", ["command-line": line]) as? String ?? ""
        guard output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw GuestTestBedError("QEMU monitor: \(line): \(output)")
        }
    }

    /// Whether QEMU's chardev `id` is connected (query-chardev names an unconnected socket
    /// "disconnected:...").
    private func chardevConnected(_ qmp: QMPClient, _ id: String) throws -> Bool {
        let chardevs = try qmp.execute("query-chardev") as? [[String: Any]] ?? []
        guard let filename = chardevs.first(where: { $0["label"] as? String == id })?["filename"] as? String else {
            throw GuestTestBedError("QEMU has no chardev \(id)")
        }
        return !filename.hasPrefix("disconnected:")
    }
}

/// The lines of a file that QEMU appends the guest's output to, as they arrive (inotify).
/// Sendable by hand (@unchecked): its mutable state is only touched under `lock`.
final class OutputWatcher: @unchecked Sendable {
    private let lock = NSLock()
    private let file: Int32
    private let inotify: Int32
    /// Readable once the guest run has ended.
    private let endedReader: Int32
    private let endedWriter: Int32
    private var pending = Data()
    private var lines: [String] = []
    private var consumed = 0

    /// Creates `path` empty and watches it.
    init(path: String) throws {
        file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard file >= 0 else { throw GuestTestBedError("cannot create \(path): errno \(errno)") }
        inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard inotify >= 0, inotify_add_watch(inotify, path, UInt32(IN_MODIFY)) >= 0 else {
            let error = errno
            close(file)
            if inotify >= 0 { close(inotify) }
            throw GuestTestBedError("cannot watch \(path): errno \(error)")
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            close(file)
            close(inotify)
            throw GuestTestBedError("pipe: errno \(errno)")
        }
        (endedReader, endedWriter) = (fds[0], fds[1])
        _ = fcntl(endedReader, F_SETFD, FD_CLOEXEC)
        _ = fcntl(endedWriter, F_SETFD, FD_CLOEXEC)
    }

    deinit {
        [file, inotify, endedReader, endedWriter].forEach { close($0) }
    }

    /// Wakes waiters for good: the guest run is over.
    func finish() {
        var byte: UInt8 = 1
        _ = write(endedWriter, &byte, 1)
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        readNew()
        return lines.map { $0 + "\n" }.joined() + String(decoding: pending, as: UTF8.self)
    }

    /// Appends what the file has gained to `lines` (complete lines) and `pending`. Under `lock`.
    private func readNew() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(file, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            pending.append(contentsOf: chunk[..<count])
        }
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            var line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
            line.removeAll { $0 == "\r" }
            lines.append(line)
            pending.removeSubrange(pending.startIndex...newline)
        }
    }

    func takeLines() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        readNew()
        defer { consumed = lines.count }
        return Array(lines[consumed...])
    }

    private var lastLines: String { (lines.suffix(10) + [String(decoding: pending, as: UTF8.self)]).joined(separator: "\n") }

    func waitForLine(timeout: Duration, where predicate: (String) -> Bool) throws -> String {
        try wait(timeout: timeout, for: "the awaited line") {
            while consumed < lines.count {
                let line = lines[consumed]
                consumed += 1
                if predicate(line) { return line }
            }
            return nil
        }
    }

    /// Waits until the guest has printed its first line (/init's begin marker, written once the
    /// script's input descriptor is open), without consuming anything.
    func waitUntilStarted(timeout: Duration) throws {
        _ = try wait(timeout: timeout, for: "its first line") { lines.isEmpty ? nil : "" }
    }

    /// Polls the file until `found` (called under `lock` after each read) returns a line.
    private func wait(timeout: Duration, for what: String, _ found: () -> String?) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var ended = false
        while true {
            // Drain the notifications before reading, so that a write after the read wakes the poll.
            var events = [UInt8](repeating: 0, count: 4096)
            while read(inotify, &events, events.count) > 0 {}
            readNew()
            if let line = found() { return line }
            if ended {
                throw GuestTestBedError("the guest run ended before the guest printed \(what); its last lines:\n\(lastLines)")
            }
            let left = deadline - clock.now
            guard left > .zero else {
                throw GuestTestBedError("the guest did not print \(what) within \(timeout); its last lines:\n\(lastLines)")
            }
            var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: endedReader, events: Int16(POLLIN), revents: 0)]
            let milliseconds = Int32(min(left.timeInterval * 1000 + 1, 3_600_000))
            if poll(&fds, 2, milliseconds) > 0 && fds[1].revents != 0 {
                ended = true  // one more read: QEMU may have written just before it exited
            }
        }
    }
}
