import CURing
#if canImport(Glibc)
import Glibc
#endif

/// io_uring: the worker queues SQEs while it walks the ring, submits them in one system call per
/// pass, and reaps completions when the ring's eventfd fires.
final class URingEngine: IOEngine {
    private let ring: OpaquePointer
    private let tags: UnsafeMutablePointer<UInt64>
    private let results: UnsafeMutablePointer<Int32>
    private static let reapBatch = 64

    init?(depth: Int) {
        guard let ring = vhu_uring_create(UInt32(min(max(depth, 8), 32768))) else { return nil }
        self.ring = ring
        tags = .allocate(capacity: Self.reapBatch)
        results = .allocate(capacity: Self.reapBatch)
    }

    deinit {
        vhu_uring_destroy(ring)
        tags.deallocate()
        results.deallocate()
    }

    /// Nothing to stop: no threads of its own, and the ring is closed with the engine.
    func shutdown() {}

    var completionDescriptor: Int32? { vhu_uring_eventfd(ring) }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        vhu_uring_readv(ring, fd, iov, UInt32(count), offset, UInt64(tag)) == 0
    }

    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        vhu_uring_writev(ring, fd, iov, UInt32(count), offset, sync ? 1 : 0, UInt64(tag)) == 0
    }

    func flush(fd: Int32, tag: UInt16) -> Bool { vhu_uring_fdatasync(ring, fd, UInt64(tag)) == 0 }

    func submit() { _ = vhu_uring_submit(ring) }

    var hasCompletions: Bool { vhu_uring_ready(ring) != 0 }

    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int {
        let n = Int(vhu_uring_reap(ring, tags, results, Int32(min(max, Self.reapBatch)), wait ? 1 : 0))
        for i in 0..<n { body(UInt16(truncatingIfNeeded: tags[i]), results[i]) }
        return n
    }
}
