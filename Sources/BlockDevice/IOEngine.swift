#if canImport(Glibc)
import Glibc
#endif

/// Asynchronous reads, writes and flushes for one queue worker. Operations carry a tag (the chain's
/// head index) and finish with a result: bytes transferred, or -errno.
protocol IOEngine: AnyObject {
    /// Readable when operations have finished: the queue worker waits on it. Nil for an engine whose
    /// operations finish before `submit` returns.
    var completionDescriptor: Int32? { get }
    /// Queue an operation; false when nothing more can be queued before `submit()`.
    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool
    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool
    func flush(fd: Int32, tag: UInt16) -> Bool
    /// Whether DISCARD and WRITE_ZEROES go through `ranges` (network stores) rather than the backend's
    /// synchronous calls on a local file.
    var handlesRanges: Bool { get }
    /// Queues a DISCARD (or, with `zeroes`, WRITE_ZEROES) of every range in `list` as one operation:
    /// its result is 0 or the first -errno. `fua`: stable before it completes.
    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool
    /// Starts everything queued.
    func submit()
    /// Hands finished operations to `body` (at most `max`, waiting for one when `wait`); returns the count.
    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int
    /// Whether finished operations are waiting to be reaped (cheap; polled by a busy worker).
    var hasCompletions: Bool { get }
    /// The worker runs with nothing in flight: an engine whose descriptor also reports events of its own
    /// (a network connection's loss, a reconnect timer) takes them, so that the descriptor does not stay
    /// readable for a worker with nothing to reap.
    func handleIdleEvents()
    /// Releases the engine's threads and descriptors once nothing is in flight (the queue stopped).
    /// The engine is not used again; calling it twice is harmless.
    func shutdown()
    /// The queue is stopping and waits for what is in flight: an engine that could wait forever (a
    /// network store that does not answer) bounds the wait from now on.
    func beginStopping()
}

extension IOEngine {
    func beginStopping() {}

    func handleIdleEvents() {}

    /// Local-file engines leave ranges to `BlockBackend`.
    var handlesRanges: Bool { false }
    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool { false }
}

/// Which engine a queue uses.
public enum IOEngineKind: String, Sendable, CaseIterable {
    /// Inline for memory-backed files, io_uring otherwise.
    case auto
    /// Synchronous reads and writes on the queue worker: for memory-backed files.
    case inline
    /// io_uring: one ring per queue worker, batched submission and completion.
    case ioUring = "io_uring"
    /// preadv/pwritev on a small pool of threads, for kernels or sandboxes without io_uring.
    case threads
}

/// Makes the engine `kind` for a queue of `depth` requests on `backend`; io_uring falls back to threads
/// when the kernel (or a seccomp filter) refuses it.
func makeIOEngine(_ kind: IOEngineKind, depth: Int, backend: BlockBackend) -> (any IOEngine, IOEngineKind) {
    if let store = backend.store { return (store.makeEngine(depth: depth), kind) }
    if kind == .ioUring || (kind == .auto && !backend.isMemoryBacked), let ring = URingEngine(depth: depth) {
        return (ring, .ioUring)
    }
    if kind != .inline && !(kind == .auto && backend.isMemoryBacked), let pool = ThreadPoolEngine(threads: 4) {
        return (pool, .threads)
    }
    // Always possible: nothing to allocate but two arrays.
    return (InlineEngine(depth: depth), .inline)
}
