import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// One DEVICE_STATE transfer (SET_DEVICE_STATE_FD ... CHECK_DEVICE_STATE): the device's state stream
/// moves through the pipe the front-end passed, on a thread of its own, because the front-end only
/// reads (or writes) the pipe after the reply and a state larger than the pipe's buffer would otherwise
/// block the control thread for good. The thread only moves bytes; the device is asked for its state
/// and given one on the control thread, with every queue stopped.
final class DeviceStateTransfer {
    /// SET_DEVICE_STATE_FD's transfer direction.
    enum Direction: UInt32, Sendable {
        /// The back-end writes its state into the pipe (the source of a migration, a snapshot).
        case save = 0
        /// The back-end reads a state from the pipe (the destination, a restore).
        case load = 1
    }

    /// The transfer parameters of SET_DEVICE_STATE_FD: direction and migration phase (0: stopped, the
    /// only phase the spec defines).
    static let stoppedPhase: UInt32 = 0
    /// The reply's flag saying the back-end returns no descriptor of its own (it uses the front-end's).
    static let noDescriptorFlag: UInt64 = 1 << 8
    /// The most bytes a loaded stream may have: the framing plus `DeviceState.maximumPayload`.
    static let maximumStream = DeviceState.maximumPayload + 64
    /// How long the thread waits for the front-end to make progress before it gives up, so a front-end
    /// that never reads or writes the pipe cannot keep a thread (and CHECK_DEVICE_STATE) waiting forever.
    static let stallMilliseconds: Int32 = 30_000

    let direction: Direction
    private let thread: PosixThread
    private let outcome: Outcome
    /// Signalled to end the transfer early (the front-end left or started another one).
    private let cancelled: EventFD

    /// Where the thread leaves its result. Sendable by hand (@unchecked): the thread writes it before it
    /// ends and the control thread reads it only after joining the thread, which orders the two.
    private final class Outcome: @unchecked Sendable {
        var result: Result<[UInt8], SystemError> = .failure(SystemError("device state transfer", errno: EIO))
    }

    /// Starts writing `bytes` into `pipe` (then closing it: end of stream).
    init(saving bytes: [UInt8], to pipe: OwnedDescriptor) throws(SystemError) {
        direction = .save
        let outcome = Outcome(), cancelled = try EventFD()
        self.outcome = outcome
        self.cancelled = cancelled
        thread = PosixThread(name: "vhu-state-save") {
            outcome.result = DeviceStateTransfer.write(bytes, to: pipe, cancelled: cancelled).map { [] }
        }
    }

    /// Starts reading `pipe` until the front-end closes it, up to `maximumStream` bytes.
    init(loadingFrom pipe: OwnedDescriptor) throws(SystemError) {
        direction = .load
        let outcome = Outcome(), cancelled = try EventFD()
        self.outcome = outcome
        self.cancelled = cancelled
        thread = PosixThread(name: "vhu-state-load") {
            outcome.result = DeviceStateTransfer.read(from: pipe, limit: DeviceStateTransfer.maximumStream, cancelled: cancelled)
        }
    }

    /// Ends the transfer at once (it fails): the thread stops waiting for the front-end.
    func cancel() { cancelled.signal() }

    /// Waits for the thread; the bytes read (load) or nothing (save), or why the transfer failed.
    func finish() -> Result<[UInt8], SystemError> {
        thread.join()
        return outcome.result
    }

    private static func write(_ bytes: [UInt8], to pipe: OwnedDescriptor, cancelled: EventFD) -> Result<Void, SystemError> {
        var sent = 0
        while sent < bytes.count {
            if let stop = waitFor(pipe, events: POLLOUT, cancelled: cancelled) { return .failure(SystemError("write of the device state", errno: stop)) }
            // At most PIPE_BUF bytes a write: that much fits once poll says a pipe is writable, so a
            // blocking pipe never blocks the thread where a cancel cannot reach it. sendmsg(2) first (the
            // call the sandbox allows for sockets): on a socket it cannot raise SIGPIPE; anything else
            // gets write(2).
            let length = min(bytes.count - sent, Int(PIPE_BUF))
            var n = bytes.withUnsafeBytes { vhu_sendmsg_fds(pipe.rawValue, $0.baseAddress! + sent, length, nil, 0, 1) }
            if n < 0 && errno == ENOTSOCK { n = bytes.withUnsafeBytes { Glibc.write(pipe.rawValue, $0.baseAddress! + sent, length) } }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(SystemError("write of the device state", errno: errno))
            }
            sent += n
        }
        return .success(())
    }

    private static func read(from pipe: OwnedDescriptor, limit: Int, cancelled: EventFD) -> Result<[UInt8], SystemError> {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            if let stop = waitFor(pipe, events: POLLIN, cancelled: cancelled) { return .failure(SystemError("read of the device state", errno: stop)) }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(pipe.rawValue, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(SystemError("read of the device state", errno: errno))
            }
            if n == 0 { return .success(bytes) }
            guard bytes.count + n <= limit else { return .failure(SystemError("device state stream longer than \(limit) bytes", errno: EFBIG)) }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }

    /// Waits until the pipe is ready for `events` (or hung up). Returns nil then, else why not:
    /// ETIMEDOUT after `stallMilliseconds` without progress, ECANCELED when cancelled.
    private static func waitFor(_ pipe: OwnedDescriptor, events: Int32, cancelled: EventFD) -> Int32? {
        var fds = [pollfd(fd: pipe.rawValue, events: Int16(events), revents: 0),
                   pollfd(fd: cancelled.rawValue, events: Int16(POLLIN), revents: 0)]
        while true {
            let n = poll(&fds, 2, stallMilliseconds)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { return ETIMEDOUT }
            if n < 0 { return errno }
            return fds[1].revents != 0 ? ECANCELED : nil
        }
    }
}
