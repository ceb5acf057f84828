// Units of a booted container: their properties, waiting for a state, their journal.

import Foundation

extension SystemdContainer {
    /// `systemctl show` of `names` for `unit`, as name → value.
    public func properties(of unit: String, _ names: [String]) throws -> [String: String] {
        let output = try check(["systemctl", "show", "--property=\(names.joined(separator: ","))", unit])
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }

    /// Polls `names` of `unit` until `condition` holds for them (every 50 ms, at most `timeout`)
    /// and returns them; throws with the last values, `what` and the unit's journal otherwise.
    @discardableResult
    public func waitFor(_ unit: String, _ names: [String], timeout: Duration, _ what: String,
                        until condition: ([String: String]) -> Bool) throws -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let values = try properties(of: unit, names)
            if condition(values) { return values }
            guard ContinuousClock.now < deadline else {
                throw SystemdBedError("\(unit): not \(what) within \(timeout); last \(values.sorted { $0.key < $1.key })\n"
                    + "journal:\n\(journal(of: unit).suffix(4000))")
            }
            pause(milliseconds: 50)
        }
    }

    /// The unit's journal (messages about it and from its processes), without metadata unless
    /// `metadata`; `priority` limits it to one syslog level (e.g. `debug`).
    public func journal(of unit: String, priority: String? = nil, metadata: Bool = false) -> String {
        var command = ["journalctl", "--no-pager", "--unit=\(unit)", "--output=\(metadata ? "short-monotonic" : "cat")"]
        if let priority { command.append("--priority=\(priority)..\(priority)") }
        return (try? run(command))?.output ?? "(journalctl failed)"
    }

    /// Waits (polling, at most `timeout`) until the unit's journal has a line containing `text`,
    /// and returns the journal. Journald takes a service's output asynchronously.
    @discardableResult
    public func waitForJournal(of unit: String, containing text: String, priority: String? = nil,
                               timeout: Duration) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let journal = journal(of: unit, priority: priority)
            if journal.contains(text) { return journal }
            guard ContinuousClock.now < deadline else {
                throw SystemdBedError("\(unit): the journal\(priority.map { " (priority \($0))" } ?? "") has no "
                    + "\"\(text)\" within \(timeout):\n\(self.journal(of: unit, metadata: true).suffix(4000))")
            }
            pause(milliseconds: 100)
        }
    }

    /// The first line of `systemctl --version` in the container, e.g. `systemd 252 (252.39-1~deb12u2)`.
    public func systemdVersion() throws -> String {
        String(try check(["systemctl", "--version"]).split(separator: "\n").first ?? "")
    }

    /// The interval of a polling loop: the wait between two looks at a condition, never a guess at
    /// when something happened.
    private func pause(milliseconds: Int) {
        var interval = timespec(tv_sec: 0, tv_nsec: milliseconds * 1_000_000)
        nanosleep(&interval, nil)
    }
}
