/// Completions made on threads other than a queue's worker (an I/O thread, a host-side socket).
/// They are handed to the worker, which alone writes the used ring, so the ring never needs a lock;
/// the port's own lock is private to its queue.
public final class CompletionPort: Sendable {
    private let pending = Locked<[UInt64]>([])
    let wake: EventFD

    /// A port that signals `wake`, the eventfd the queue's worker waits on (public so a harness can
    /// build a `Virtqueue` without a worker).
    public init(wake: EventFD) { self.wake = wake }

    /// Queues the completion of chain `head` with `written` bytes and wakes the queue's worker.
    public func complete(head: UInt16, written: UInt32) {
        pending.withLock { $0.append(UInt64(head) << 32 | UInt64(written)) }
        wake.signal()
    }

    /// Moves queued completions into `queue`'s used ring (worker thread only).
    func drain(into queue: Virtqueue, spare: inout [UInt64]) {
        pending.withLock { swap(&$0, &spare) }
        for entry in spare {
            queue.complete(head: UInt16(truncatingIfNeeded: entry >> 32), written: UInt32(truncatingIfNeeded: entry))
        }
        spare.removeAll(keepingCapacity: true)
    }
}
