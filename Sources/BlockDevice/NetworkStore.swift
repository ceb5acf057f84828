#if canImport(Glibc)
import Glibc
#endif

/// A disk that lives in a network store (a Ceph RBD image, an NBD export) instead of a local file:
/// it reports the disk's geometry and what the store can do, and makes each queue's engine, which
/// carries that queue's requests to the store asynchronously.
protocol NetworkStore: AnyObject, Sendable {
    /// What the store is, for logs: `rbd:pool/image`, `nbd:URI`.
    var name: String { get }
    var readOnly: Bool { get }
    var logicalBlockSize: Int { get }
    var canFlush: Bool { get }
    var canDiscard: Bool { get }
    var canWriteZeroes: Bool { get }
    /// The disk size now (an RBD image may have been resized); nil when it cannot be asked right now.
    func currentSize() -> UInt64?
    /// The engine of one queue of at most `depth` requests.
    func makeEngine(depth: Int) -> any IOEngine
    /// Makes every completed write stable, synchronously (the front-end went away; nothing is in
    /// flight). Returns 0 or an errno value.
    func flushAll() -> Int32
    /// Why the last engine could not be made, when the store knows (nil otherwise).
    var engineFailure: String? { get }
    /// Lets go of the store at exit (an RBD image's exclusive lock, at once rather than after the
    /// cluster notices a dead client). Nothing is in flight; calling it twice is harmless.
    func close()
}

extension NetworkStore {
    var engineFailure: String? { nil }
}

/// One range of a DISCARD or WRITE_ZEROES request, in bytes.
struct ByteRange {
    var offset: UInt64
    var length: UInt64
    /// WRITE_ZEROES only: the blocks may be deallocated.
    var unmap: Bool
}
