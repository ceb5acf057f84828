import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// Synchronous preadv/pwritev on the queue worker itself, for memory-backed files (tmpfs, ramfs,
/// hugetlbfs): their I/O never waits for a device, so an asynchronous engine would only add a
/// hand-off (io_uring punts such files to a kernel worker thread). Results are kept until reaped.
final class InlineEngine: IOEngine {
    private let tags: UnsafeMutablePointer<UInt16>
    private let results: UnsafeMutablePointer<Int32>
    private let capacity: Int
    private var count = 0

    init(depth: Int) {
        capacity = max(depth, 1)
        tags = .allocate(capacity: capacity)
        results = .allocate(capacity: capacity)
    }

    deinit {
        tags.deallocate()
        results.deallocate()
    }

    /// None: results are reaped in the same pass that made them.
    var completionDescriptor: Int32? { nil }

    @inline(__always)
    private func record(_ tag: UInt16, _ n: Int) -> Bool {
        guard count < capacity else { return false }
        tags[count] = tag
        results[count] = n < 0 ? -errno : Int32(clamping: n)
        count += 1
        return true
    }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        record(tag, retrying { preadv(fd, iov, Int32(count), off_t(offset)) })
    }

    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        record(tag, retrying { sync ? vhu_pwritev_dsync(fd, iov, Int32(count), offset) : pwritev(fd, iov, Int32(count), off_t(offset)) })
    }

    func flush(fd: Int32, tag: UInt16) -> Bool { record(tag, retrying { Int(fdatasync(fd)) }) }

    func submit() {}

    func shutdown() {}

    var hasCompletions: Bool { count > 0 }

    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int {
        let n = min(max, count)
        for i in 0..<n { body(tags[i], results[i]) }
        // Keep any not handed out (max smaller than what is there) for the next call.
        for i in n..<count { tags[i - n] = tags[i]; results[i - n] = results[i] }
        count -= n
        return n
    }

    @inline(__always)
    private func retrying(_ call: () -> Int) -> Int {
        while true {
            let n = call()
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }
}
