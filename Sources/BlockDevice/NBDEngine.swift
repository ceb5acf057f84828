import CNBD
import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// One queue's requests on an NBD export, driven by the queue worker itself: a connection of its own
/// on which `submit` issues libnbd's asynchronous commands straight from guest memory (one per guest
/// buffer: NBD has no vectored commands; libnbd sends what the socket takes without blocking), and
/// `reap` lets libnbd read the replies (and send the rest) as the socket allows; completion callbacks
/// run on the worker, inside those calls. The worker waits on one descriptor, `NBDWaitSet`: the socket
/// in the direction libnbd needs, and a timer for reconnect attempts and deadlines.
/// When the connection drops, the engine reconnects and issues the interrupted commands again (every
/// virtio-blk request is idempotent); commands still without a connection after the target's retry
/// time fail with EIO.
final class NBDEngine: NetworkEngine, IOEngine {
    private let store: NBDStore
    private let logger = Logger(label: "vhost-user-blk")
    /// Jobs per tag, made on first use and reused (a tag is reused only after its request finished).
    private var jobs: [[NBDJob]]
    /// Commands not on the connection: queued since the last `submit`, without a connection, interrupted.
    private var waiting: [NBDJob] = []
    /// Filled by libnbd's completion callbacks.
    private let finished = NBDJobList()
    /// Requests finished and not reaped yet: (tag, result).
    private var results: [(UInt16, Int32)] = []
    private var inFlight = 0
    private var connection: NBDConnection
    private let waitSet: NBDWaitSet
    /// The server said it is shutting down (ESHUTDOWN replies): nothing more goes on this connection.
    private var draining = false
    /// Stopping: when the queue's requests must be answered by (monotonic ns), and whether that passed.
    private var stopping = false
    private var stopDeadline: UInt64 = 0
    private var abandoned = false
    private var closed = false

    init(store: NBDStore, depth: Int) throws(SystemError) {
        self.store = store
        jobs = Array(repeating: [], count: depth)
        waitSet = try NBDWaitSet()
        connection = NBDConnection(uri: store.target.uri, retrySeconds: store.target.retrySeconds, logger: logger)
        super.init(depth: depth)
        waiting.reserveCapacity(depth)
        results.reserveCapacity(depth)
        advance()
    }

    deinit { shutdown() }

    var completionDescriptor: Int32? { waitSet.descriptor }

    var hasCompletions: Bool { !results.isEmpty || waitSet.isReady }

    /// What is in flight gets answered within the retry time, or fails (see `advance`).
    func beginStopping() {
        stopping = true
        advance()
    }

    /// Flushes and closes the connection (nothing is in flight: the queue reaped every result first).
    func shutdown() {
        guard !closed else { return }
        closed = true
        waitSet.forgetSocket()
        connection.close()
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
        waiting.append(j)
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
        if !waiting.isEmpty { advance() }
    }

    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int {
        service(timeoutMilliseconds: 0)
        while wait && results.isEmpty { service(timeoutMilliseconds: 100) }
        let n = results.count
        for (tag, result) in results { body(tag, result) }
        results.removeAll(keepingCapacity: true)
        return n
    }

    /// Takes a lost connection or a fired timer while nothing is in flight: the wait set must not stay
    /// readable for a worker that has nothing to reap.
    func handleIdleEvents() { service(timeoutMilliseconds: 0) }

    // MARK: Driving the connection (on the queue worker)

    /// Lets libnbd read and write what the socket is ready for, takes a fired timer, and moves on.
    private func service(timeoutMilliseconds: Int32) {
        let events = waitSet.wait(timeoutMilliseconds: timeoutMilliseconds)
        if events.socket.any { connection.notify(events.socket) }
        advance()
    }

    /// Everything that follows from the state now: finished commands reported (or issued again), a dead
    /// connection dropped and a new one started, waiting commands issued, or failed past their
    /// deadline; then what the wait set watches and when its timer fires.
    private func advance() {
        while true {
            collect()
            if connection.isDead && !abandoned {
                waitSet.forgetSocket()
                connection.drop()
                draining = false
            }
            if stopping && !abandoned { checkStopDeadline() }
            if abandoned {
                for job in waiting { report(job.tag, -EIO) }
                waiting.removeAll(keepingCapacity: true)
                break
            }
            if connection.handle == nil { connection.connectIfDue(now: monotonicNanoseconds()) }
            guard connection.isConnected, !draining, !waiting.isEmpty else { break }
            inFlight += waiting.count
            for job in waiting { job.issue(on: connection.handle!) }
            waiting.removeAll(keepingCapacity: true)
            // Refused at once, or the connection died while sending: take those too.
            if finished.jobs.isEmpty { break }
        }
        var wakeAt: UInt64 = 0
        func wake(at deadline: UInt64) { if deadline != 0 && (wakeAt == 0 || deadline < wakeAt) { wakeAt = deadline } }
        if !abandoned && !connection.isConnected {
            // No connection: each command waits up to the retry time, then fails.
            let now = monotonicNanoseconds()
            waiting.removeAll { job in
                if job.deadline == 0 { job.deadline = now + connection.retryNanoseconds }
                guard job.deadline <= now else { wake(at: job.deadline); return false }
                report(job.tag, -EIO)
                return true
            }
            if connection.handle == nil { wake(at: Swift.max(connection.nextAttempt, 1)) }
        }
        if stopping && !abandoned { wake(at: stopDeadline) }
        let socket = connection.socket
        waitSet.watch(socket: socket.fd, direction: socket.direction)
        waitSet.arm(at: wakeAt)
    }

    /// A queue stops within the retry time: a server that does not answer gets its connection shut,
    /// which makes libnbd fail what is in flight, and every request left fails with IOERR.
    private func checkStopDeadline() {
        let now = monotonicNanoseconds()
        if stopDeadline == 0 { stopDeadline = now + connection.retryNanoseconds }
        guard now >= stopDeadline else { return }
        abandoned = true
        logger.error("nbd \(store.target.uri): stopping with \(inFlight + waiting.count) command(s) unanswered after \(connection.retryNanoseconds / 1_000_000_000) s; they fail with IOERR")
        connection.abort()
    }

    /// Reports the commands libnbd's callbacks finished, or queues them again: the flush after a
    /// write through, a command the connection's loss interrupted.
    private func collect() {
        guard !finished.jobs.isEmpty else { return }
        let lost = connection.isDead
        for job in finished.jobs {
            inFlight -= 1
            if job.error == 0 {
                if job.flushAfter {
                    job.flushAfter = false
                    job.operation = .flush
                    waiting.append(job)
                } else {
                    report(job.tag, 0)
                }
            } else if !abandoned && (lost || Self.isConnectionError(job.error)) {
                // Issued again on the next connection.
                if job.error == ESHUTDOWN { draining = true }
                waiting.append(job)
            } else {
                report(job.tag, -job.error)
            }
        }
        finished.jobs.removeAll(keepingCapacity: true)
    }

    /// One command's result; its request goes to `results` when it was the last.
    private func report(_ tag: UInt16, _ result: Int32) {
        _ = count(tag, result) { results.append(($0, $1)) }
    }

    /// Errors that say the connection (or the server) went away, not that the command failed: an
    /// NBD server replies ESHUTDOWN to what is in flight when it stops.
    private static func isConnectionError(_ error: Int32) -> Bool {
        [ENOTCONN, ESHUTDOWN, ECONNRESET, ECONNABORTED, EPIPE].contains(error)
    }
}

/// The jobs libnbd's callbacks finished since the engine last looked (the queue worker's own list).
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

/// libnbd's completion callback, on the queue worker (inside nbd_aio_notify_* or a command's issue).
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
