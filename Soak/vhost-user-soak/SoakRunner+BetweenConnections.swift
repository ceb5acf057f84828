import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Between connections: what the daemon finished after a drop, resubmissions after a kill, the idle
/// resource checks, and the verdicts judged at the end of the run.
extension SoakRunner {
    // MARK: Between connections

    /// Waits for the daemon to finish the connection, takes what it completed after the drop, checks
    /// stopped rings did not move, and samples the idle daemon.
    func afterDisconnect(_ rings: RingSet, stoppedAt: [UInt16]?) {
        guard daemon.waitForDisconnects(accepted, timeoutMilliseconds: Self.completionTimeout) else {
            checkDaemonAlive("it did not report the front-end gone within \(Self.completionTimeout / 1000) s")
            return
        }
        reapAll(rings)
        if let stoppedAt {
            for (q, base) in zip(rings.queues, stoppedAt) where q.ring.publishedUsedIndex != base {
                stats.violation("queue \(q.ring.index): the used index moved from \(base) to \(q.ring.publishedUsedIndex) after GET_VRING_BASE")
            }
        }
        sampleIdle()
    }

    /// The daemon was killed with requests in flight: takes what it published, records which heads the
    /// inflight region says a new process must resubmit, and starts it again.
    func restartAfterKill(_ rings: RingSet) {
        reapAll(rings)
        let marked = rings.markedInFlight()
        rings.expectedResubmissions = zip(rings.queues, marked).map { q, heads in
            heads.intersection(q.outstanding.map(\.head))
        }
        do {
            try daemon.start()
            incarnationStart = monotonicMilliseconds()
            stats.daemonRestarts += 1
        } catch {
            stats.violation("the daemon did not start again after being killed: \(error)")
            daemonDied = true
        }
    }

    /// After the connection that followed a kill: the new process resubmitted exactly the marked heads.
    /// Its first "queue N: resubmitting K request(s)" line for each queue must name the marked count;
    /// a queue stopped again before its first pass reports the same requests again, never more.
    func checkResubmissions(_ rings: RingSet) {
        guard let expected = rings.expectedResubmissions else { return }
        rings.expectedResubmissions = nil
        var first: [Int: Int] = [:]
        for line in daemon.lines(containing: "resubmitting") {
            let words = line.split(separator: " ")
            guard let q = words.firstIndex(of: "queue").flatMap({ Int(words[$0 + 1].dropLast()) }),
                  let n = words.firstIndex(of: "resubmitting").flatMap({ Int(words[$0 + 1]) }), q < expected.count else {
                stats.violation("cannot read the daemon's line \"\(line)\"")
                continue
            }
            if first[q] == nil { first[q] = n }
            if n > expected[q].count { stats.violation("queue \(q): the new daemon resubmitted \(n) request(s), the inflight region marked \(expected[q].count)") }
        }
        for (q, heads) in expected.enumerated() where (first[q] ?? 0) != heads.count {
            stats.violation("queue \(q): after the kill the inflight region marked \(heads.count) request(s) in flight, the new daemon resubmitted \(first[q] ?? 0)")
        }
        stats.resubmitted += first.values.reduce(0, +)
    }

    func sampleIdle() {
        guard var sample = ResourceSample(pid: daemon.pid) else { checkDaemonAlive("its /proc entry is gone"); return }
        let now = monotonicMilliseconds()
        let warmedUp = now >= warmUpEnd && now - incarnationStart >= 3000
        if warmedUp && history.baseline == nil { sample = settledSample() ?? sample }
        if warmedUp, let baseline = history.baseline {
            // The daemon closes the connection's descriptors right after it reports the disconnect.
            let settle = now + 2000
            while (sample.descriptors != baseline.descriptors || sample.threads != baseline.threads) && monotonicMilliseconds() < settle {
                var none = pollfd()
                _ = poll(&none, 0, 20)
                sample = ResourceSample(pid: daemon.pid) ?? sample
            }
            if sample.descriptors != baseline.descriptors || sample.threads != baseline.threads {
                stats.violation("idle daemon holds \(sample.descriptors) fds and \(sample.threads) threads; baseline \(baseline.descriptors) fds, \(baseline.threads) threads (connection \(stats.connections))")
            }
            if sample.poolThreads > Self.poolThreadLimit {
                stats.violation("idle daemon has \(sample.poolThreads) libdispatch worker threads (connection \(stats.connections))")
            }
        }
        if daemon.incarnations == 1 || history.baseline == nil {
            history.recordIdle(sample, warmedUp: warmedUp, addToSeries: now - lastSeriesSample >= 2000)
            if now - lastSeriesSample >= 2000 { lastSeriesSample = now }
        }
    }

    /// A sample equal to one taken 100 ms later (within a second): the baseline must not catch the
    /// daemon in the middle of closing a connection.
    func settledSample() -> ResourceSample? {
        var previous = ResourceSample(pid: daemon.pid)
        for _ in 0..<10 {
            var none = pollfd()
            _ = poll(&none, 0, 100)
            let next = ResourceSample(pid: daemon.pid)
            if let next, next.descriptors == previous?.descriptors && next.threads == previous?.threads { return next }
            previous = next
        }
        return previous
    }

    func samplePeak() {
        let now = monotonicMilliseconds()
        guard now - lastPeakSample >= 2000, let sample = ResourceSample(pid: daemon.pid) else { return }
        lastPeakSample = now
        history.recordPeak(sample)
    }

    /// Requests still in flight on rings the soak gives up may or may not have been carried out.
    func giveUp(_ old: RingSet) {
        for q in old.queues {
            for o in q.abandonAll() {
                profile.abandon(o.tag)
                stats.abandoned += 1
            }
        }
        if rings === old { rings = nil }
    }

    func makeRings(inflightWanted: Bool) -> RingSet? {
        let queueCount = Int.random(in: 1...profile.maxQueues, using: &random)
        let queueSize = [16, 64, 128, 256].filter { $0 <= profile.maxQueueSize }.randomElement(using: &random)!
        var mask: UInt64 = 0
        if random.chance(25) { mask |= VirtioFeature.ringEventIdx }
        if random.chance(20) { mask |= VirtioFeature.ringIndirectDesc }
        do {
            return try RingSet(queueCount: queueCount, queueSize: queueSize, regionCount: Int.random(in: 1...3, using: &random),
                               slabBytes: profile.slabBytes, maskFeatures: mask, useInflight: inflightWanted || random.chance(60))
        } catch {
            stats.violation("cannot lay out rings: \(error)")
            daemonDied = true
            return nil
        }
    }

    func checkDaemonAlive(_ context: String) {
        if let status = daemon.exited() {
            stats.violation("the daemon died (status \(status)): \(context)")
            daemonDied = true
        } else {
            stats.violation(context)
        }
    }

    /// Lines at error level are violations unless a drop explains them (a reply to a closed socket).
    func checkErrorLines() {
        for line in daemon.errorLines {
            if line.contains("dropping the front-end") && (line.contains("Broken pipe") || line.contains("Connection reset")) {
                stats.explainedErrorLines += 1
            } else {
                stats.violation("daemon logged: \(line)")
            }
        }
    }

    // MARK: Verdict

    /// The growth of idle resident memory that fails the soak.
    static let rssGrowthLimitKiB = 8 << 10

    /// Resource violations judged at the end (RSS growth).
    func judgeResources() {
        if let (first, last) = history.rssQuarterMedians, last - first >= Self.rssGrowthLimitKiB {
            stats.violation("idle RSS grew from \(first) KiB to \(last) KiB (first- and last-quarter medians)")
        }
    }
}
