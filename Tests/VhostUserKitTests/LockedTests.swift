import Testing
import VhostUserKit

@Suite("Locked")
struct LockedTests {
    /// Four threads meet at one lock many times (so the contended path is taken): no two critical
    /// sections overlap and no update is lost. Under ThreadSanitizer this also checks that TSan sees the
    /// hand-overs: a plain Mutex makes it report a race on the value here.
    @Test("critical sections on four threads never overlap and lose no update")
    func mutualExclusion() {
        struct State {
            var inside = 0
            var maxInside = 0
            var total = 0
            var log: [Int] = []
        }
        let state = Locked(State())
        let threads = 4
        let rounds = 20_000
        let workers = (0..<threads).map { thread in
            PosixThread {
                for round in 0..<rounds {
                    state.withLock { s in
                        s.inside += 1
                        s.maxInside = max(s.maxInside, s.inside)
                        s.total += 1
                        // A growing array: a lost or torn update would show as a wrong count or a crash.
                        if round % 100 == 0 { s.log.append(thread) }
                        s.inside -= 1
                    }
                }
            }
        }
        workers.forEach { $0.join() }
        let result = state.withLock { $0 }
        #expect(result.total == threads * rounds)
        #expect(result.maxInside == 1)
        #expect(result.log.count == threads * rounds / 100)
        #expect((0..<threads).allSatisfy { t in result.log.filter { $0 == t }.count == rounds / 100 })
    }

    @Test("a throwing body leaves the value as it left it and the lock free")
    func throwingBody() {
        struct Refused: Error {}
        let counter = Locked(0)
        #expect(throws: Refused.self) {
            try counter.withLock { (value: inout Int) throws(Refused) in
                value = 7
                throw Refused()
            }
        }
        #expect(counter.withLock { $0 } == 7)
    }
}
