#if canImport(Glibc)
import Glibc
#endif

/// Reads and writes an engine queues between `submit()`s, handed back as runs: consecutive requests of
/// one direction, each starting where the one before ended. A network store pays per operation (librbd
/// spends about as much CPU on a 4 KiB read as on a 1 MiB one), so the requests of a guest's sequential
/// stream that arrive in one batch go out as one operation, as QEMU's virtio-blk merges them.
/// Order is kept: runs come back in the order their requests were queued.
struct AdjacentRuns {
    struct Request {
        var iov: UnsafePointer<iovec>
        var count: Int
        var offset: UInt64
        var length: Int
        var tag: UInt16
        var isWrite: Bool
    }

    /// Most requests, iovecs and bytes in one run.
    static let maxRequests = 64
    static let maxIovecs = 256
    static let maxBytes = 4 << 20

    private let requests: UnsafeMutablePointer<Request>
    private let capacity: Int
    private(set) var count = 0

    /// Room for `capacity` queued requests (a queue's depth: a tag is queued at most once).
    init(capacity: Int) {
        self.capacity = capacity
        requests = .allocate(capacity: capacity)
    }

    func deallocate() { requests.deallocate() }

    /// Queues a request; false when full.
    mutating func append(_ request: Request) -> Bool {
        guard count < capacity else { return false }
        (requests + count).initialize(to: request)
        count += 1
        return true
    }

    /// Hands every run to `body`, oldest first, and empties the list.
    mutating func drain(_ body: (UnsafeBufferPointer<Request>) -> Void) {
        var first = 0
        while first < count {
            var end = first + 1, iovecs = requests[first].count, bytes = requests[first].length
            while end < count, end - first < Self.maxRequests {
                let previous = requests[end - 1], next = requests[end]
                guard next.isWrite == previous.isWrite, next.offset == previous.offset &+ UInt64(previous.length),
                      iovecs + next.count <= Self.maxIovecs, bytes + next.length <= Self.maxBytes else { break }
                iovecs += next.count
                bytes += next.length
                end += 1
            }
            body(UnsafeBufferPointer(start: requests + first, count: end - first))
            first = end
        }
        count = 0
    }
}
