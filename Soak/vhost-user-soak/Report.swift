import Foundation

/// The end-of-run table: one column per daemon, one row per measure, and the verdicts.
struct Report {
    let runners: [SoakRunner]

    func render() -> String {
        var rows: [(String, [String])] = []
        func row(_ name: String, _ value: (SoakRunner) -> String) { rows.append((name, runners.map(value))) }
        row("connections") { "\($0.stats.connections)" }
        for ending in ConnectionEnding.allCases {
            row("  ended \(ending.rawValue)") { "\($0.stats.endings[ending] ?? 0)" }
        }
        row("requests submitted") { "\($0.stats.requestsSubmitted)" }
        row("requests completed") { "\($0.stats.requestsCompleted)" }
        row("in flight at drops") { "\($0.stats.inFlightAtDrops)" }
        row("  completed after the drop") { "\($0.stats.completedAfterDrop)" }
        row("  resubmitted after a kill") { "\($0.stats.resubmitted)" }
        row("  on rings given up") { "\($0.stats.abandoned)" }
        row("lost") { "\($0.stats.lost)" }
        row("bytes verified") { mebibytes($0.profile.bytesVerified) }
        row("daemon restarts (kills)") { "\($0.stats.daemonRestarts)" }
        row("error lines explained by drops") { "\($0.stats.explainedErrorLines)" }
        row("RSS idle first→last (MiB)") { r in pair(r.history.first.map { kib($0.rssKiB) }, r.history.last.map { kib($0.rssKiB) }) }
        row("RSS idle quarter medians") { r in r.history.rssQuarterMedians.map { "\(kib($0.first))→\(kib($0.last))" } ?? "too few" }
        row("RSS peak (MiB)") { kib($0.history.peak.rssKiB) }
        row("threads idle first→last") { r in pair(r.history.first.map { "\($0.threads)" }, r.history.last.map { "\($0.threads)" }) }
        row("threads baseline/peak") { r in "\(r.history.baseline.map { "\($0.threads)" } ?? "-")/\(r.history.peak.threads)" }
        row("libdispatch threads peak") { "\($0.history.peak.poolThreads)" }
        row("fds idle first→last") { r in pair(r.history.first.map { "\($0.descriptors)" }, r.history.last.map { "\($0.descriptors)" }) }
        row("fds baseline/peak") { r in "\(r.history.baseline.map { "\($0.descriptors)" } ?? "-")/\(r.history.peak.descriptors)" }
        row("errors") { "\($0.stats.violations.count)" }
        row("verdict") { $0.stats.violations.isEmpty ? "PASS" : "FAIL" }

        let nameWidth = rows.map(\.0.count).max()! + 2
        let widths = runners.indices.map { i in max(runners[i].target.name.count, rows.map { $0.1[i].count }.max()!) + 2 }
        func line(_ name: String, _ cells: [String]) -> String {
            pad(name, nameWidth) + zip(cells, widths).map { padLeft($0, $1) }.joined()
        }
        var text = line("", runners.map(\.target.name)) + "\n"
        for (name, cells) in rows { text += line(name, cells) + "\n" }
        for r in runners where !r.stats.violations.isEmpty {
            text += "\n\(r.target.name): \(r.stats.violations.count) problem(s); daemon log: \(r.daemon.logPath)\n"
            for v in r.stats.violations.prefix(20) { text += "  - \(v)\n" }
        }
        return text
    }

    private func pair(_ a: String?, _ b: String?) -> String { "\(a ?? "-")→\(b ?? "-")" }
    private func kib(_ value: Int) -> String { String(format: "%.1f", Double(value) / 1024) }
    private func mebibytes(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
    private func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
    private func padLeft(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
}
