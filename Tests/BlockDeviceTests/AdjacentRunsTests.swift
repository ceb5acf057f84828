@testable import BlockDevice
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Which queued requests go out together: runs of one direction, each request starting where the one
/// before ended, within the run limits, in queue order.
@Suite("AdjacentRuns: a batch's sequential requests become runs")
struct AdjacentRunsTests {
    /// One iovec array shared by every request (only counts and lengths matter here).
    nonisolated(unsafe) static let iov: UnsafeMutablePointer<iovec> = {
        let p = UnsafeMutablePointer<iovec>.allocate(capacity: AdjacentRuns.maxIovecs + 1)
        p.initialize(repeating: iovec(), count: AdjacentRuns.maxIovecs + 1)
        return p
    }()

    /// Queues `requests` (offset, length, write?, iovec count) and returns the runs as lists of tags.
    func runs(_ requests: [(offset: UInt64, length: Int, write: Bool, iovecs: Int)]) -> [[UInt16]] {
        var list = AdjacentRuns(capacity: requests.count)
        defer { list.deallocate() }
        for (tag, r) in requests.enumerated() {
            let queued = list.append(.init(iov: Self.iov, count: r.iovecs, offset: r.offset, length: r.length, tag: UInt16(tag), isWrite: r.write))
            #expect(queued)
        }
        var result: [[UInt16]] = []
        list.drain { run in result.append(run.map(\.tag)) }
        #expect(list.count == 0)
        return result
    }

    @Test("adjacent requests of one direction make one run; a gap, an overlap or a change of direction starts another")
    func splits() {
        #expect(runs([(0, 4096, false, 1), (4096, 4096, false, 1), (8192, 8192, false, 2)]) == [[0, 1, 2]])
        #expect(runs([(0, 4096, false, 1), (8192, 4096, false, 1)]) == [[0], [1]], "a gap")
        #expect(runs([(0, 8192, false, 1), (4096, 4096, false, 1)]) == [[0], [1]], "an overlap")
        #expect(runs([(4096, 4096, false, 1), (0, 4096, false, 1)]) == [[0], [1]], "backwards")
        #expect(runs([(0, 4096, false, 1), (4096, 4096, true, 1), (8192, 4096, true, 1), (12288, 4096, false, 1)])
                == [[0], [1, 2], [3]], "reads, then writes, then a read")
        #expect(runs([]) == [])
    }

    @Test("a run holds at most 64 requests, 256 iovecs and 4 MiB")
    func limits() {
        let many = (0..<AdjacentRuns.maxRequests + 6).map { (UInt64($0 * 4096), 4096, false, 1) }
        #expect(runs(many).map(\.count) == [AdjacentRuns.maxRequests, 6])
        // 100 iovecs each: two fit in 256, the third starts a run.
        #expect(runs([(0, 4096, true, 100), (4096, 4096, true, 100), (8192, 4096, true, 100)]) == [[0, 1], [2]])
        // A request over the limit on its own still goes out, alone.
        #expect(runs([(0, 4096, false, AdjacentRuns.maxIovecs + 1), (4096, 4096, false, 1)]) == [[0], [1]])
        // 1 MiB each: four fit in 4 MiB, the fifth starts a run.
        let mib = 1 << 20
        #expect(runs((0..<5).map { (UInt64($0 * mib), mib, false, 1) }) == [[0, 1, 2, 3], [4]])
    }

    @Test("the list holds its capacity and no more, and is empty again after drain")
    func capacity() {
        var list = AdjacentRuns(capacity: 2)
        defer { list.deallocate() }
        let r = AdjacentRuns.Request(iov: Self.iov, count: 1, offset: 0, length: 512, tag: 0, isWrite: false)
        let first = list.append(r), second = list.append(r), third = list.append(r)
        #expect(first && second && !third)
        var seen = 0
        list.drain { seen += $0.count }
        let again = list.append(r)
        #expect(seen == 2 && again)
    }
}
