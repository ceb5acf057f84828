// The daemons of one guest run: started before QEMU, restarted on the host side's request while
// the guest runs, stopped after it. A daemon that listens already (`GuestDaemon.Launch.listening`,
// e.g. under systemd) is only connected to: the set starts, restarts and stops nothing for it.

import Foundation
import Glibc

/// The running daemons of one guest run, each on its own socket in the run's directory.
/// Sendable by hand (@unchecked): its mutable state is only touched under `lock`.
final class DaemonSet: @unchecked Sendable {
    private let lock = NSLock()
    let daemons: [GuestDaemon]
    let sockets: [String]
    /// The current incarnation of each daemon; nil for one the set did not start.
    private var current: [RunningDaemon?] = []
    /// The output of each daemon's earlier incarnations (those that were restarted).
    private var earlierLogs: [String]
    private var stopped = false

    init(daemons: [GuestDaemon], directory: String) {
        self.daemons = daemons
        sockets = daemons.enumerated().map { index, daemon in
            if case .listening(let socket) = daemon.launch { return socket }
            return "\(directory)/\(index).sock"
        }
        earlierLogs = daemons.map { _ in "" }
    }

    private func readinessLine(_ index: Int) -> String {
        daemons[index].readinessLine.replacingOccurrences(of: "{socket}", with: sockets[index])
    }

    /// Starts every daemon in order, each once the previous one is ready.
    func startAll(timeout: Duration) throws {
        lock.lock()
        defer { lock.unlock() }
        for index in daemons.indices {
            if case .listening = daemons[index].launch {
                current.append(nil)
                continue
            }
            let process = try RunningDaemon.start(daemons[index], socket: sockets[index])
            current.append(process)
            try process.waitUntilReady(line: readinessLine(index), timeout: timeout)
        }
    }

    /// The current incarnation of daemon `index`; throws for one the set did not start. Under `lock`.
    private func started(_ index: Int) throws -> RunningDaemon {
        guard current.indices.contains(index) else { throw GuestTestBedError("there is no daemon \(index)") }
        guard let process = current[index] else {
            throw GuestTestBedError("daemon \(index) listens on \(sockets[index]) on its own; the bed did not start it")
        }
        return process
    }

    /// Sends `signal` to daemon `index`, waits for it to exit, starts it again on the same socket
    /// and waits until it is ready (each step within `timeout`).
    func restart(_ index: Int, signal: Int32, timeout: Duration) throws {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { throw GuestTestBedError("daemon \(index): the guest run is over; not restarting") }
        let old = try started(index)
        old.kill(signal)
        guard let status = old.waitForExit(timeout: timeout) else {
            throw GuestTestBedError("daemon \(index) (\(old.commandLine)) did not exit within \(timeout) of signal \(signal)")
        }
        earlierLogs[index] += old.finalLog(timeout: .seconds(5))
            + "\n--- exited with status \(status) after signal \(signal); restarted ---\n"
        let process = try RunningDaemon.start(daemons[index], socket: sockets[index])
        current[index] = process
        try process.waitUntilReady(line: readinessLine(index), timeout: timeout)
    }

    /// Waits until daemon `index`'s current incarnation prints a line containing `text`.
    func waitForLine(_ index: Int, containing text: String, timeout: Duration) throws {
        lock.lock()
        let process: RunningDaemon
        do {
            process = try started(index)
        } catch {
            lock.unlock()
            throw error
        }
        lock.unlock()
        try process.waitUntilReady(line: text, timeout: timeout)
    }

    /// Sends `signal` to daemon `index`'s process group (nothing for one the set did not start).
    func signal(_ index: Int, _ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if current.indices.contains(index) { current[index]?.kill(signal) }
    }

    /// Stops every daemon and waits for the end of its output (what it prints on the way out, such as
    /// a sanitizer's leak or race summary, belongs in `logs`). Later calls do nothing.
    func stopAll() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        current.forEach { $0?.stop() }
        current.forEach { _ = $0?.finalLog(timeout: .seconds(5)) }
    }

    /// Each daemon's output, its earlier incarnations' first (empty for one the set did not start).
    var logs: [String] {
        lock.lock()
        defer { lock.unlock() }
        return current.indices.map { earlierLogs[$0] + (current[$0]?.log ?? "") }
    }

    var commandLines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return current.indices.map { current[$0]?.commandLine ?? "(listening on \(sockets[$0]) on its own)" }
    }
}
