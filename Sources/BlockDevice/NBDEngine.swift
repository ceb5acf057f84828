import CNBD
import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// One queue's requests on an NBD export: a connection of its own, driven by a thread of its own that
/// issues libnbd's asynchronous commands straight from guest memory (one per guest buffer: NBD has no
/// vectored commands) and polls the socket. Results go to the inbox that wakes the queue worker.
/// When the connection drops, the thread reconnects and issues the interrupted commands again (every
/// virtio-blk request is idempotent); commands still without a connection after the target's retry
/// time fail with EIO. Sendable by hand (@unchecked): the worker and the thread share only `incoming`
/// (locked), the eventfds and the jobs it hands over through `incoming`.
final class NBDEngine: NetworkEngine, IOEngine, @unchecked Sendable {
    private let store: NBDStore
    private let logger = Logger(label: "vhost-user-blk")
    /// Jobs per tag, made on first use and reused (a tag is reused only after its request finished).
    private var jobs: [[NBDJob]]
    private var queued: [NBDJob] = []
    private let incoming = Locked<(jobs: [NBDJob], stopping: Bool)>(([], false))
    private let wake: EventFD
    private var thread: PosixThread?
    /// Filled by libnbd's completion callbacks, on the engine's thread.
    private let finished = NBDJobList()

    init(store: NBDStore, depth: Int) throws(SystemError) {
        self.store = store
        jobs = Array(repeating: [], count: depth)
        wake = try EventFD()
        try super.init(depth: depth)
        queued.reserveCapacity(depth)
        thread = PosixThread(name: "vhu-blk-nbd") { [unowned self] in self.run() }
    }

    deinit { shutdown() }

    /// What is in flight gets answered within the retry time, or fails (see `run`).
    func beginStopping() {
        incoming.withLock { $0.stopping = true }
        wake.signal()
    }

    /// Stops and joins the thread (nothing is in flight: the queue reaped every result first).
    func shutdown() {
        guard let thread else { return }
        beginStopping()
        thread.join()
        self.thread = nil
    }

    private func job(_ tag: UInt16, _ part: Int) -> NBDJob {
        while jobs[Int(tag)].count <= part { jobs[Int(tag)].append(NBDJob(tag: tag, finished: finished)) }
        return jobs[Int(tag)][part]
    }

    private func queue(_ tag: UInt16, _ part: Int, _ operation: NBDJob.Operation, buffer: UnsafeMutableRawPointer?,
                       length: UInt64, offset: UInt64, flags: UInt32 = 0, flushAfter: Bool = false) {
        let j = job(tag, part)
        j.operation = operation
        j.buffer = buffer
        j.length = length
        j.offset = offset
        j.flags = flags
        j.flushAfter = flushAfter
        j.deadline = 0
        queued.append(j)
    }

    private func transfer(_ operation: NBDJob.Operation, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        guard count > 0, begin(tag, parts: count, expected: Self.length(iov, count: count)) else { return false }
        let fua = sync && store.canFUA
        var position = offset
        for i in 0..<count {
            queue(tag, i, operation, buffer: iov[i].iov_base, length: UInt64(iov[i].iov_len), offset: position,
                  flags: fua ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0, flushAfter: sync && !fua && store.canFlush)
            position += UInt64(iov[i].iov_len)
        }
        return true
    }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        transfer(.read, iov, count: count, offset: offset, sync: false, tag: tag)
    }

    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        transfer(.write, iov, count: count, offset: offset, sync: sync, tag: tag)
    }

    func flush(fd: Int32, tag: UInt16) -> Bool {
        guard begin(tag, parts: 1, expected: 0) else { return false }
        queue(tag, 0, .flush, buffer: nil, length: 0, offset: 0)
        return true
    }

    var handlesRanges: Bool { true }

    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool {
        guard begin(tag, parts: list.count, expected: 0) else { return false }
        let fuaFlag = fua && store.canFUA ? UInt32(LIBNBD_CMD_FLAG_FUA) : 0
        for (i, r) in list.enumerated() {
            let noHole = zeroes && !r.unmap ? UInt32(LIBNBD_CMD_FLAG_NO_HOLE) : 0
            queue(tag, i, zeroes ? .zero : .trim, buffer: nil, length: r.length, offset: r.offset, flags: fuaFlag | noHole,
                  flushAfter: fua && !store.canFUA && store.canFlush)
        }
        return true
    }

    func submit() {
        guard !queued.isEmpty else { return }
        incoming.withLock { $0.jobs.append(contentsOf: queued) }
        queued.removeAll(keepingCapacity: true)
        wake.signal()
    }

    // MARK: The connection's thread

    private func run() {
        var connection = NBDConnection(uri: store.target.uri, retrySeconds: store.target.retrySeconds, logger: logger)
        var waiting: [NBDJob] = []
        var taken: [NBDJob] = []
        var inFlight = 0
        // The server said it is shutting down (ESHUTDOWN replies): nothing more goes on this connection.
        var draining = false
        // Stopping: when the queue's requests must be answered by (monotonic ns), and whether that passed.
        var stopDeadline: UInt64 = 0
        var abandoned = false
        connection.connectIfDue()
        while true {
            wake.drain()
            let stopping = incoming.withLock { state in
                swap(&state.jobs, &taken)
                return state.stopping
            }
            waiting.append(contentsOf: taken)
            taken.removeAll(keepingCapacity: true)
            if stopping && waiting.isEmpty && inFlight == 0 { break }
            if stopping && !abandoned {
                // A queue stops within the retry time: a server that does not answer gets its connection
                // shut, which makes libnbd fail what is in flight, and every request left fails with IOERR.
                let now = monotonicNanoseconds()
                if stopDeadline == 0 { stopDeadline = now + connection.retryNanoseconds }
                if now >= stopDeadline {
                    abandoned = true
                    logger.error("nbd \(store.target.uri): stopping with \(inFlight + waiting.count) command(s) unanswered after \(connection.retryNanoseconds / 1_000_000_000) s; they fail with IOERR")
                    connection.abort()
                }
            }
            if abandoned {
                for job in waiting { inbox.post(job.tag, -EIO) }
                waiting.removeAll(keepingCapacity: true)
                if inFlight == 0 { break }
            }
            connection.connectIfDue()
            if let handle = connection.handle, !draining, !abandoned {
                for job in waiting {
                    inFlight += 1
                    job.issue(on: handle)
                }
                waiting.removeAll(keepingCapacity: true)
            } else if connection.handle == nil {
                // No connection: each job waits up to the retry time, then fails.
                let now = monotonicNanoseconds()
                waiting.removeAll { job in
                    if job.deadline == 0 { job.deadline = now + connection.retryNanoseconds }
                    guard job.deadline <= now else { return false }
                    inbox.post(job.tag, -EIO)
                    return true
                }
            }
            connection.poll(wake: wake.rawValue, timeoutMilliseconds: connection.handle == nil || !waiting.isEmpty || stopping ? 100 : 1000)
            let lost = connection.isDead
            for job in finished.jobs {
                inFlight -= 1
                if job.error == 0 {
                    if job.flushAfter {
                        job.flushAfter = false
                        job.operation = .flush
                        waiting.append(job)
                    } else {
                        inbox.post(job.tag, 0)
                    }
                } else if !abandoned && (lost || Self.isConnectionError(job.error)) {
                    // Retried on the next connection.
                    if job.error == ESHUTDOWN { draining = true }
                    waiting.append(job)
                } else {
                    inbox.post(job.tag, -job.error)
                }
            }
            finished.jobs.removeAll(keepingCapacity: true)
            if lost && !abandoned {
                connection.drop()
                draining = false
            }
        }
        connection.close()
    }

    /// Errors that say the connection (or the server) went away, not that the command failed: an
    /// NBD server replies ESHUTDOWN to what is in flight when it stops.
    private static func isConnectionError(_ error: Int32) -> Bool {
        [ENOTCONN, ESHUTDOWN, ECONNRESET, ECONNABORTED, EPIPE].contains(error)
    }
}

/// The jobs libnbd's callbacks finished in the current poll round (the engine thread's own list).
final class NBDJobList {
    var jobs: [NBDJob] = []
}

/// One NBD command: a piece of a guest request, issued again after a reconnect if it was interrupted.
final class NBDJob {
    enum Operation { case read, write, flush, trim, zero }
    let tag: UInt16
    let finished: NBDJobList
    var operation = Operation.read
    var buffer: UnsafeMutableRawPointer?
    var length: UInt64 = 0
    var offset: UInt64 = 0
    var flags: UInt32 = 0
    /// A write through on a server without FUA: a flush follows before the job reports.
    var flushAfter = false
    /// When the job fails if no connection takes it (monotonic ns; 0: not waiting for one).
    var deadline: UInt64 = 0
    var error: Int32 = 0
    var done = false

    init(tag: UInt16, finished: NBDJobList) {
        self.tag = tag
        self.finished = finished
    }

    /// Issues the command; its completion (or its refusal) lands in `finished`.
    func issue(on handle: OpaquePointer) {
        done = false
        error = 0
        let callback = nbd_completion_callback(callback: nbdCompletion, user_data: Unmanaged.passUnretained(self).toOpaque(), free: nil)
        let cookie: Int64
        switch operation {
        case .read: cookie = nbd_aio_pread(handle, buffer, Int(length), offset, callback, 0)
        case .write: cookie = nbd_aio_pwrite(handle, buffer, Int(length), offset, callback, flags)
        case .flush: cookie = nbd_aio_flush(handle, callback, 0)
        case .trim: cookie = nbd_aio_trim(handle, length, offset, callback, flags)
        case .zero: cookie = nbd_aio_zero(handle, length, offset, callback, flags)
        }
        if cookie < 0 && !done {
            let e = nbd_get_errno()
            finish(e > 0 ? e : EIO)
        }
    }

    func finish(_ error: Int32) {
        done = true
        self.error = error
        finished.jobs.append(self)
    }
}

/// libnbd's completion callback, on the engine's thread (inside nbd_aio_notify_*).
private func nbdCompletion(_ userData: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<Int32>?) -> Int32 {
    guard let userData else { return 1 }
    Unmanaged<NBDJob>.fromOpaque(userData).takeUnretainedValue().finish(error?.pointee ?? 0)
    return 1  // retire the command
}

/// The monotonic clock in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}
