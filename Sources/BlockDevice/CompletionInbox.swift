import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Where a network store's client library threads leave finished operations for the queue worker:
/// a locked list of (tag, result) and an eventfd that the worker waits on (its wake descriptor).
/// The eventfd is signalled only when the list goes from empty to not empty; the worker drains the
/// eventfd before it takes the list, so no result is ever left without a wake-up.
final class CompletionInbox: Sendable {
    private let results = Locked<[(UInt16, Int32)]>([])
    private let ready: EventFD

    init() throws(SystemError) { ready = try EventFD() }

    var descriptor: Int32 { ready.rawValue }

    /// From any thread.
    func post(_ tag: UInt16, _ result: Int32) {
        withUnsafePointer(to: tag) { post(UnsafeBufferPointer(start: $0, count: 1), result) }
    }

    /// From any thread: every one of `tags` finished with `result`. The tags are read under the lock.
    func post(_ tags: UnsafeBufferPointer<UInt16>, _ result: Int32) {
        let wasEmpty = results.withLock { list in
            let empty = list.isEmpty
            for tag in tags { list.append((tag, result)) }
            return empty
        }
        if wasEmpty { ready.signal() }
    }

    var isEmpty: Bool { results.withLock { $0.isEmpty } }

    /// Swaps the posted results into `spare` (empty, with capacity kept), waiting up to 100 ms at a time
    /// for the first when `wait`.
    func take(into spare: inout [(UInt16, Int32)], wait: Bool) {
        if wait { while isEmpty { _ = ready.wait(timeoutMilliseconds: 100) } }
        ready.drain()
        results.withLock { swap(&$0, &spare) }
    }
}

/// What the engines of network stores share: one request may become several operations on the store
/// (an NBD command per guest buffer, one per DISCARD range); the engine counts them per tag and
/// reports the request once, with the first error or the expected byte count.
class NetworkEngine {
    private struct Tally {
        var remaining: Int32
        var result: Int32
        var expected: Int32
    }

    private let tallies: UnsafeMutablePointer<Tally>
    private let depth: Int

    init(depth: Int) {
        self.depth = depth
        tallies = .allocate(capacity: depth)
        tallies.initialize(repeating: Tally(remaining: 0, result: 0, expected: 0), count: depth)
    }

    deinit { tallies.deallocate() }

    /// Starts counting request `tag`: it finishes after `parts` results; `expected` is what it reports
    /// when none failed. False when the tag is out of range.
    func begin(_ tag: UInt16, parts: Int, expected: Int32) -> Bool {
        guard Int(tag) < depth, parts > 0 else { return false }
        tallies[Int(tag)] = Tally(remaining: Int32(parts), result: 0, expected: expected)
        return true
    }

    /// Counts one operation's `result` (0 or -errno) for `tag`; when it was the request's last, hands
    /// the request's result to `body` and returns true.
    @inline(__always)
    func count(_ tag: UInt16, _ result: Int32, _ body: (UInt16, Int32) -> Void) -> Bool {
        let t = tallies + Int(tag)
        if result < 0 && t.pointee.result >= 0 { t.pointee.result = result }
        t.pointee.remaining -= 1
        guard t.pointee.remaining == 0 else { return false }
        body(tag, t.pointee.result < 0 ? t.pointee.result : t.pointee.expected)
        return true
    }

    /// Sum of the iovec lengths: the byte count a read or write reports.
    static func length(_ iov: UnsafePointer<iovec>, count: Int) -> Int32 {
        var n = 0
        for i in 0..<count { n += iov[i].iov_len }
        return Int32(clamping: n)
    }
}

/// A network engine whose results come from its client library's threads through a `CompletionInbox`
/// (librbd's callbacks).
class InboxEngine: NetworkEngine {
    let inbox: CompletionInbox
    private var spare: [(UInt16, Int32)] = []

    init(depth: Int, inbox: CompletionInbox) {
        self.inbox = inbox
        super.init(depth: depth)
        spare.reserveCapacity(depth)
    }

    var completionDescriptor: Int32? { inbox.descriptor }

    var hasCompletions: Bool { !inbox.isEmpty }

    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int {
        inbox.take(into: &spare, wait: wait)
        var finished = 0
        for (tag, result) in spare where count(tag, result, body) { finished += 1 }
        spare.removeAll(keepingCapacity: true)
        return finished
    }
}
