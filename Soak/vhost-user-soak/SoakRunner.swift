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
    var stats = SoakStats()
    var history = ResourceHistory()
    var finalExitStatus: Int32?
    var random: SoakRandom
    let deadline: Int
    let warmUpEnd: Int
    /// From here on, connections on rings with an inflight region may end by killing the daemon.
    let killPhaseStart: Int
    var rings: RingSet?
    /// Connections the current daemon process has accepted (each ends with one disconnect line).
    var accepted = 0
    var lastSeriesSample = 0
    var lastPeakSample = 0
    var daemonDied = false
    /// When the current daemon process started: its first seconds are its own warm-up.
    var incarnationStart: Int
    /// Whether a set-up ever negotiated INFLIGHT_SHMFD: only then may the daemon be killed mid-request.
    var daemonOffersInflight = false
    /// How long a running queue may leave a request without completion before it counts as lost.
    static let completionTimeout = 15_000
    static let maxViolations = 50
    /// libdispatch worker threads an idle daemon may have (its pool grows and shrinks by itself).
    static let poolThreadLimit = 4

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

    func chooseEnding() -> ConnectionEnding {
        // The connection after a kill resumes the rings and must see every request through.
        if rings?.expectedResubmissions != nil { return random.chance(50) ? .betweenRequests : .properStop }
        if monotonicMilliseconds() >= killPhaseStart, daemonOffersInflight, random.chance(50) { return .daemonKilled }
        return random.weighted([(.midSetUp, 12), (.betweenRequests, 18), (.midRequest, 30), (.properStop, 30), (.unreadReply, 6)])
    }

    /// The last connection: resumes the rings, lets every request complete, stops them properly.
    func drainAndStop() {
        guard let rings, rings.outstandingCount > 0 else { return }
        connection(ending: .properStop, resumeOnly: true, drainFirst: true)
    }

    // MARK: One connection

    func connection(ending: ConnectionEnding, resumeOnly: Bool = false, drainFirst: Bool = false) {
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
    func abandonConnection(_ frontend: FakeFrontend, _ rings: RingSet, because problem: String) {
        stats.violation(problem)
        close(frontend, rings)
        afterDisconnect(rings, stoppedAt: nil)
        giveUp(rings)
    }

    /// Ends a set-up connection as `ending` says; returns the bases GET_VRING_BASE gave, if it was used.
    func end(_ ending: ConnectionEnding, _ frontend: FakeFrontend, _ setup: FrontendSetup, _ rings: RingSet) throws -> [UInt16]? {
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

    func close(_ frontend: FakeFrontend, _ rings: RingSet) {
        shutdown(frontend.channel.socket.rawValue, Int32(SHUT_RDWR))
        for q in rings.queues { q.ring.connection = nil }
    }

    // MARK: Requests

    /// Submits a batch at a random depth on a random set of queues and kicks them; with `wait`, then
    /// waits until all or a random part of what is in flight has completed.
    func batch(_ rings: RingSet, _ setup: FrontendSetup, wait: Bool) throws {
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
    func waitUntil(_ rings: RingSet, outstandingAtMost limit: Int) throws {
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

    func reapAll(_ rings: RingSet) {
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
    func churn(_ frontend: FakeFrontend, _ setup: FrontendSetup, _ rings: RingSet) throws {
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
}
