import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Soaks one daemon until a deadline: connection after connection in a random front-end's message
/// order, random request batches on random queues, and a random end to each connection. Between
/// connections it checks that the daemon is back to its idle descriptors and threads, and records its
/// resident memory. Everything found goes into `stats`.
final class SoakRunner: @unchecked Sendable {
    let target: SoakTarget
    let profile: any LoadProfile
    let daemon: DaemonUnderTest
    private(set) var stats = SoakStats()
    private(set) var history = ResourceHistory()
    private(set) var finalExitStatus: Int32?
    private var random: SoakRandom
    private let deadline: Int
    private let warmUpEnd: Int
    /// From here on, connections on rings with an inflight region may end by killing the daemon.
    private let killPhaseStart: Int
    private var rings: RingSet?
    /// Connections the current daemon process has accepted (each ends with one disconnect line).
    private var accepted = 0
    private var lastSeriesSample = 0
    private var lastPeakSample = 0
    private var daemonDied = false
    /// When the current daemon process started: its first seconds are its own warm-up.
    private var incarnationStart: Int
    /// Whether a set-up ever negotiated INFLIGHT_SHMFD: only then may the daemon be killed mid-request.
    private var daemonOffersInflight = false
    /// How long a running queue may leave a request without completion before it counts as lost.
    private static let completionTimeout = 15_000
    private static let maxViolations = 50
    /// libdispatch worker threads an idle daemon may have (its pool grows and shrinks by itself).
    private static let poolThreadLimit = 4

    struct Drop: Error {}
    struct Stall: Error { let outstanding: Int }

    init(target: SoakTarget, profile: any LoadProfile, daemon: DaemonUnderTest, seed: UInt64, milliseconds: Int) {
        self.target = target
        self.profile = profile
        self.daemon = daemon
        random = SoakRandom(seed: seed, name: target.name)
        let now = monotonicMilliseconds()
        deadline = now + milliseconds
        warmUpEnd = now + max(3000, min(30_000, milliseconds / 10))
        killPhaseStart = now + milliseconds * 9 / 10
        incarnationStart = now
    }

    // MARK: The loop

    func run() {
        while monotonicMilliseconds() < deadline && !daemonDied && stats.violations.count < Self.maxViolations {
            connection(ending: chooseEnding())
        }
        if !daemonDied && stats.violations.count < Self.maxViolations { drainAndStop() }
        if let rings { giveUp(rings) }
        checkErrorLines()
        judgeResources()
        if !daemonDied {
            finalExitStatus = daemon.stop()
            if finalExitStatus != 0 { stats.violation("the daemon did not exit cleanly on SIGTERM: status \(finalExitStatus.map(String.init) ?? "none within 10 s")") }
        }
    }

    private func chooseEnding() -> ConnectionEnding {
        // The connection after a kill resumes the rings and must see every request through.
        if rings?.expectedResubmissions != nil { return random.chance(50) ? .betweenRequests : .properStop }
        if monotonicMilliseconds() >= killPhaseStart, daemonOffersInflight, random.chance(50) { return .daemonKilled }
        return random.weighted([(.midSetUp, 12), (.betweenRequests, 18), (.midRequest, 30), (.properStop, 30), (.unreadReply, 6)])
    }

    /// The last connection: resumes the rings, lets every request complete, stops them properly.
    private func drainAndStop() {
        guard let rings, rings.outstandingCount > 0 else { return }
        connection(ending: .properStop, resumeOnly: true, drainFirst: true)
    }

    // MARK: One connection

    private func connection(ending: ConnectionEnding, resumeOnly: Bool = false, drainFirst: Bool = false) {
        let mustResume = resumeOnly || rings?.expectedResubmissions != nil
        if !(mustResume || (rings != nil && ending != .daemonKilled && random.chance(60))) {
            if let rings { giveUp(rings) }
            guard let fresh = makeRings(inflightWanted: ending == .daemonKilled) else { return }
            rings = fresh
        }
        guard let rings else { return }
        // libblkio never shares an inflight region: not after a kill, nor when the next one may be a kill.
        // It enables the rings before it adds the data regions, so it cannot resume rings with requests
        // pending (as a fresh client, it never has any).
        var profiles = FrontendProfile.allCases
        if rings.expectedResubmissions != nil || ending == .daemonKilled || rings.outstandingCount > 0 {
            profiles.removeAll { $0 == .libblkio }
        }
        let order = profiles.randomElement(using: &random)!

        let frontend: FakeFrontend
        do {
            frontend = try FakeFrontend.connect(to: daemon.socketPath)
        } catch {
            checkDaemonAlive("connect failed: \(error)")
            return
        }
        accepted += 1
        stats.connections += 1
        frontend.replyTimeoutMilliseconds = Int32(Self.completionTimeout)
        if ending == .midSetUp {
            let cut = Int.random(in: 1...24, using: &random)
            var sent = 0
            frontend.willSend = { _ in
                sent += 1
                if sent == cut { throw Drop() }
            }
        }

        // A connection cut short may have started some rings: from now on they resume at the used index.
        let bases = rings.resumeBases
        rings.stoppedBases = nil
        let checkResubmission = rings.expectedResubmissions != nil
        let setup: FrontendSetup
        do {
            setup = try frontend.setUp(order, memory: rings.memory, queues: rings.queues.map(\.ring), bases: bases,
                                       inflight: rings.useInflight ? (rings.inflight.map { .reuse($0) } ?? .new) : .none,
                                       maskFeatures: rings.maskFeatures)
        } catch is Drop {
            stats.endings[.midSetUp, default: 0] += 1
            close(frontend, rings)
            afterDisconnect(rings, stoppedAt: nil)
            return
        } catch {
            return abandonConnection(frontend, rings, because: "set-up in the \(order) order failed: \(error)")
        }
        frontend.willSend = nil
        if setup.protocolFeatures.contains(.inflightShmfd) { daemonOffersInflight = true }
        var actualEnding = ending
        if ending == .midSetUp { actualEnding = .betweenRequests }
        if ending == .daemonKilled && setup.inflight == nil { actualEnding = .midRequest }
        if rings.inflight == nil { rings.inflight = setup.inflight }
        var stoppedAt: [UInt16]?
        do {
            if random.chance(30), let problem = try profile.checkControlPlane(frontend, setup) { stats.violation("control plane: \(problem)") }
            for _ in 0..<Int.random(in: 1...12, using: &random) where monotonicMilliseconds() < deadline {
                if random.chance(8) { try churn(frontend, setup, rings) }
                try batch(rings, setup, wait: true)
            }
            if drainFirst { try waitUntil(rings, outstandingAtMost: 0) }
            stoppedAt = try end(actualEnding, frontend, setup, rings)
        } catch let stall as Stall {
            stats.lost += stall.outstanding
            return abandonConnection(frontend, rings, because: "\(stall.outstanding) request(s) got no completion within \(Self.completionTimeout / 1000) s (\(order) order)")
        } catch {
            return abandonConnection(frontend, rings, because: "connection in the \(order) order failed: \(error)")
        }
        stats.endings[actualEnding, default: 0] += 1
        close(frontend, rings)
        if actualEnding == .daemonKilled {
            restartAfterKill(rings)
        } else {
            afterDisconnect(rings, stoppedAt: stoppedAt)
            if checkResubmission { checkResubmissions(rings) }
        }
    }

    /// Records a failed connection, closes it and gives its rings up (the next connection lays out new ones).
    private func abandonConnection(_ frontend: FakeFrontend, _ rings: RingSet, because problem: String) {
        stats.violation(problem)
        close(frontend, rings)
        afterDisconnect(rings, stoppedAt: nil)
        giveUp(rings)
    }

    /// Ends a set-up connection as `ending` says; returns the bases GET_VRING_BASE gave, if it was used.
    private func end(_ ending: ConnectionEnding, _ frontend: FakeFrontend, _ setup: FrontendSetup, _ rings: RingSet) throws -> [UInt16]? {
        switch ending {
        case .midSetUp, .betweenRequests:
            try waitUntil(rings, outstandingAtMost: 0)
        case .midRequest, .daemonKilled:
            try batch(rings, setup, wait: false)
            if ending == .daemonKilled {
                // A random moment within the daemon's pass over the batch.
                let until = monotonicNanoseconds() + UInt64.random(in: 0...400_000, using: &random)
                while monotonicNanoseconds() < until {}
                daemon.stop(signal: SIGKILL)
                accepted = 0
            }
            reapAll(rings)
            stats.inFlightAtDrops += rings.queues.reduce(0) { $0 + $1.markDropped() }
        case .unreadReply:
            try frontend.send(.getFeatures)
            reapAll(rings)
            stats.inFlightAtDrops += rings.queues.reduce(0) { $0 + $1.markDropped() }
        case .properStop:
            if random.chance(50) { try waitUntil(rings, outstandingAtMost: 0) }
            var bases: [UInt16] = []
            for q in rings.queues {
                let base = try frontend.getVringBase(q.ring.index)
                bases.append(base)
                reapAll(rings)
                // The daemon finishes what it took before it answers: the base is the used index, and
                // every request it did not take is still in the available ring.
                let used = q.ring.publishedUsedIndex
                if base != used { stats.violation("queue \(q.ring.index): GET_VRING_BASE returned \(base) but the used index is \(used)") }
                let unconsumed = Int(q.ring.availIndex &- base)
                if unconsumed != q.outstandingCount {
                    stats.violation("queue \(q.ring.index): base \(base) leaves \(unconsumed) request(s) unconsumed but \(q.outstandingCount) are in flight")
                }
            }
            stats.inFlightAtDrops += rings.queues.reduce(0) { $0 + $1.markDropped() }
            rings.stoppedBases = bases
            return bases
        }
        return nil
    }

    private func close(_ frontend: FakeFrontend, _ rings: RingSet) {
        shutdown(frontend.channel.socket.rawValue, Int32(SHUT_RDWR))
        for q in rings.queues { q.ring.connection = nil }
    }

    // MARK: Requests

    /// Submits a batch at a random depth on a random set of queues and kicks them; with `wait`, then
    /// waits until all or a random part of what is in flight has completed.
    private func batch(_ rings: RingSet, _ setup: FrontendSetup, wait: Bool) throws {
        let indirect = setup.features & VirtioFeature.ringIndirectDesc != 0
        let depth = Int.random(in: 1...rings.queues[0].slots, using: &random)
        var active = rings.queues.filter { _ in random.chance(70) }
        if active.isEmpty { active = [rings.queues.randomElement(using: &random)!] }
        for q in active {
            for _ in 0..<Int.random(in: 1...depth, using: &random) {
                guard let (slot, slab) = q.nextSlab(),
                      let request = profile.makeRequest(queue: q.ring.index, slab: slab, random: &random) else { break }
                q.submit(request, slot: slot, indirect: indirect && random.chance(30))
                stats.requestsSubmitted += 1
            }
            q.ring.notifyDevice()
        }
        samplePeak()
        guard wait else { return }
        let outstanding = rings.outstandingCount
        try waitUntil(rings, outstandingAtMost: random.chance(50) ? 0 : Int.random(in: 0...outstanding / 2, using: &random))
    }

    /// Reaps completions until at most `limit` requests are in flight; throws `Stall` when none comes
    /// for `completionTimeout`.
    private func waitUntil(_ rings: RingSet, outstandingAtMost limit: Int) throws {
        var lastProgress = monotonicMilliseconds()
        var fds = rings.queues.map { pollfd(fd: $0.ring.call.rawValue, events: Int16(POLLIN), revents: 0) }
        while true {
            let before = rings.outstandingCount
            reapAll(rings)
            let now = monotonicMilliseconds()
            if rings.outstandingCount <= limit { return }
            if rings.outstandingCount < before { lastProgress = now }
            let left = lastProgress + Self.completionTimeout - now
            if left <= 0 { throw Stall(outstanding: rings.outstandingCount) }
            if poll(&fds, nfds_t(fds.count), Int32(min(left, 1000))) > 0 {
                for q in rings.queues { q.ring.call.drain() }
            }
        }
    }

    private func reapAll(_ rings: RingSet) {
        for q in rings.queues {
            q.reap { completion, slab in
                switch completion {
                case let .unknownHead(head):
                    stats.violation("queue \(q.ring.index): used element names head \(head), which is not in flight (a duplicate or invented completion)")
                case let .request(o, usedLength):
                    stats.requestsCompleted += 1
                    if o.inFlightAtDrop { stats.completedAfterDrop += 1 }
                    if let problem = profile.complete(o.tag, usedLength: usedLength, slab: slab!) {
                        stats.violation("queue \(q.ring.index) head \(o.descriptors[0]): \(problem)")
                    }
                }
            }
        }
    }

    // MARK: Control traffic while requests run

    /// A control request that a VMM may send while the rings run: each restarts queues in the daemon.
    private func churn(_ frontend: FakeFrontend, _ setup: FrontendSetup, _ rings: RingSet) throws {
        switch Int.random(in: 0..<3, using: &random) {
        case 0:
            let q = rings.queues.randomElement(using: &random)!.ring.index
            try frontend.setVringEnable(q, false)
            try frontend.setVringEnable(q, true)
        case 1:
            if setup.protocolFeatures.contains(.configureMemSlots) {
                let extra = try FakeGuestMemory(size: 1 << 20, guestBase: 0x40_0000_0000, userOffset: 0x7e00_0000_0000)
                try frontend.addMemReg(extra.regions[0], file: extra.file.rawValue)
                try frontend.remMemReg(extra.regions[0])
            } else {
                try frontend.setMemTable(rings.memory)
            }
        default:
            if let problem = try profile.checkControlPlane(frontend, setup) { stats.violation("control plane: \(problem)") }
        }
    }

    // MARK: Between connections

    /// Waits for the daemon to finish the connection, takes what it completed after the drop, checks
    /// stopped rings did not move, and samples the idle daemon.
    private func afterDisconnect(_ rings: RingSet, stoppedAt: [UInt16]?) {
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
    private func restartAfterKill(_ rings: RingSet) {
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
    private func checkResubmissions(_ rings: RingSet) {
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

    private func sampleIdle() {
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
    private func settledSample() -> ResourceSample? {
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

    private func samplePeak() {
        let now = monotonicMilliseconds()
        guard now - lastPeakSample >= 2000, let sample = ResourceSample(pid: daemon.pid) else { return }
        lastPeakSample = now
        history.recordPeak(sample)
    }

    /// Requests still in flight on rings the soak gives up may or may not have been carried out.
    private func giveUp(_ old: RingSet) {
        for q in old.queues {
            for o in q.abandonAll() {
                profile.abandon(o.tag)
                stats.abandoned += 1
            }
        }
        if rings === old { rings = nil }
    }

    private func makeRings(inflightWanted: Bool) -> RingSet? {
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

    private func checkDaemonAlive(_ context: String) {
        if let status = daemon.exited() {
            stats.violation("the daemon died (status \(status)): \(context)")
            daemonDied = true
        } else {
            stats.violation(context)
        }
    }

    /// Lines at error level are violations unless a drop explains them (a reply to a closed socket).
    private func checkErrorLines() {
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
