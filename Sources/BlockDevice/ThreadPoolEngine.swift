import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The fallback engine: preadv/pwritev/fdatasync on a few threads. Jobs and results pass through two
/// locked lists private to this queue; an eventfd tells the queue worker that results are in.
/// `shutdown()` (the queue stopped) joins the threads; every queue restart makes a new engine.
/// Sendable by hand (@unchecked): the pool threads touch only the locked lists and the eventfds; the
/// other state belongs to the queue worker.
final class ThreadPoolEngine: IOEngine, @unchecked Sendable {
    private struct Job {
        enum Operation { case read, write, writeSync, flush }
        var operation: Operation
        var fd: Int32
        var iov: UnsafePointer<iovec>?
        var count: Int32
        var offset: UInt64
        var tag: UInt16
    }

    private struct Shared {
        var jobs: [Job] = []
        var stopping = false
    }

    private let shared = Locked(Shared())
    private let results = Locked<[(UInt16, Int32)]>([])
    private let jobsReady: EventFD
    private let resultsReady: EventFD
    private var queued: [Job] = []
    private var spare: [(UInt16, Int32)] = []
    private var threads: [PosixThread] = []

    /// Nil when the eventfds cannot be made (descriptor limit reached).
    init?(threads count: Int) {
        // A semaphore eventfd: each signal wakes exactly one worker (one job, or one stop).
        guard let jobs = try? EventFD(semaphore: true), let results = try? EventFD() else { return nil }
        jobsReady = jobs
        resultsReady = results
        queued.reserveCapacity(64)
        threads = (0..<count).map { _ in PosixThread(name: "vhu-blk-io") { [unowned self] in self.work() } }
    }

    deinit { shutdown() }

    /// Stops and joins the threads (nothing is in flight: the queue reaped every result first).
    func shutdown() {
        shared.withLock { $0.stopping = true }
        for _ in threads { jobsReady.signal() }
        threads.forEach { $0.join() }
        threads.removeAll()
    }

    var completionDescriptor: Int32? { resultsReady.rawValue }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        queued.append(Job(operation: .read, fd: fd, iov: iov, count: Int32(count), offset: offset, tag: tag))
        return true
    }

    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        queued.append(Job(operation: sync ? .writeSync : .write, fd: fd, iov: iov, count: Int32(count), offset: offset, tag: tag))
        return true
    }

    func flush(fd: Int32, tag: UInt16) -> Bool {
        queued.append(Job(operation: .flush, fd: fd, iov: nil, count: 0, offset: 0, tag: tag))
        return true
    }

    func submit() {
        guard !queued.isEmpty else { return }
        shared.withLock { $0.jobs.append(contentsOf: queued) }
        for _ in 0..<min(queued.count, threads.count) { jobsReady.signal() }
        queued.removeAll(keepingCapacity: true)
    }

    var hasCompletions: Bool { !results.withLock { $0.isEmpty } }

    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int {
        if wait { while results.withLock({ $0.isEmpty }) { _ = resultsReady.wait(timeoutMilliseconds: 100) } }
        resultsReady.drain()
        results.withLock { swap(&$0, &spare) }
        let n = spare.count
        for (tag, result) in spare { body(tag, result) }
        spare.removeAll(keepingCapacity: true)
        return n
    }

    private func work() {
        while true {
            let next: Job?? = shared.withLock { s in
                if s.stopping { return .some(nil) }
                return s.jobs.isEmpty ? nil : .some(s.jobs.removeFirst())
            }
            switch next {
            case .some(nil): return
            case .none: _ = jobsReady.wait(timeoutMilliseconds: 1000)
            case let .some(.some(job)):
                let result = perform(job)
                results.withLock { $0.append((job.tag, result)) }
                resultsReady.signal()
            }
        }
    }

    private func perform(_ job: Job) -> Int32 {
        while true {
            let n: Int
            switch job.operation {
            case .read: n = preadv(job.fd, job.iov, job.count, off_t(job.offset))
            case .write: n = pwritev(job.fd, job.iov, job.count, off_t(job.offset))
            case .writeSync: n = vhu_pwritev_dsync(job.fd, job.iov, job.count, job.offset)
            case .flush: n = Int(fdatasync(job.fd))
            }
            if n < 0 && errno == EINTR { continue }
            return n < 0 ? -errno : Int32(clamping: n)
        }
    }
}
