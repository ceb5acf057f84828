import CNBD
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An NBD engine's connection: made, polled, dropped when dead and made again, at most every
/// half second; it logs a lost connection and a failed reconnect once, and the recovery once.
struct NBDConnection {
    let uri: String
    let retryNanoseconds: UInt64
    let logger: Logger
    private(set) var handle: OpaquePointer?
    private var nextAttempt: UInt64 = 0
    /// Down since the last connection (logged), and the last failed attempt's error (logged once).
    private var reportedDown = false
    private var lastFailure: String?

    init(uri: String, retrySeconds: Int, logger: Logger) {
        self.uri = uri
        retryNanoseconds = UInt64(max(retrySeconds, 0)) * 1_000_000_000
        self.logger = logger
    }

    /// Connects when there is no connection and the last attempt is half a second old.
    mutating func connectIfDue() {
        guard handle == nil else { return }
        let now = monotonicNanoseconds()
        guard now >= nextAttempt else { return }
        nextAttempt = now + 500_000_000
        do {
            handle = try NBDStore.connect(uri)
            if reportedDown { logger.notice("nbd \(uri): connected again") }
            reportedDown = false
            lastFailure = nil
        } catch {
            if lastFailure != error.description { logger.error("nbd \(uri): \(error.description); retrying every 0.5 s") }
            reportedDown = true
            lastFailure = error.description
        }
    }

    /// Whether the connection died (the server went away or broke the protocol).
    var isDead: Bool {
        guard let handle else { return false }
        return nbd_aio_is_dead(handle) == 1 || nbd_aio_is_closed(handle) == 1
    }

    /// Closes a dead connection; the next `connectIfDue` makes a new one.
    mutating func drop() {
        guard let handle else { return }
        if !reportedDown { logger.error("nbd \(uri): connection lost; reconnecting") }
        reportedDown = true
        nbd_close(handle)
        self.handle = nil
        nextAttempt = 0
    }

    /// Waits for the socket (in the direction libnbd needs) or the wake descriptor, then lets libnbd
    /// move on; completion callbacks run in here.
    func poll(wake: Int32, timeoutMilliseconds: Int32) {
        var socket = pollfd(fd: -1, events: 0, revents: 0)
        if let handle, nbd_aio_get_fd(handle) >= 0 {
            let direction = nbd_aio_get_direction(handle)
            socket.fd = nbd_aio_get_fd(handle)
            if direction & UInt32(LIBNBD_AIO_DIRECTION_READ) != 0 { socket.events |= Int16(POLLIN) }
            if direction & UInt32(LIBNBD_AIO_DIRECTION_WRITE) != 0 { socket.events |= Int16(POLLOUT) }
        }
        // Two pollfds on the stack: this runs for every batch of replies.
        var fds = (pollfd(fd: wake, events: Int16(POLLIN), revents: 0), socket)
        let ready = withUnsafeMutableBytes(of: &fds) {
            Glibc.poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, timeoutMilliseconds)
        }
        guard ready > 0, let handle, fds.1.fd >= 0 else { return }
        let revents = Int32(fds.1.revents)
        if revents & (POLLIN | POLLHUP | POLLERR) != 0 { _ = nbd_aio_notify_read(handle) }
        if revents & POLLOUT != 0, !isDead { _ = nbd_aio_notify_write(handle) }
    }

    /// Shuts the socket (a stopping queue gave up on the server): libnbd sees the connection die and
    /// fails every command in flight, and `close` does not flush on it.
    func abort() {
        guard let handle else { return }
        let fd = nbd_aio_get_fd(handle)
        if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Flushes (the queue stopped: its completed writes become stable, as a file's are on disconnect)
    /// and disconnects.
    mutating func close() {
        guard let handle else { return }
        if !isDead, nbd_can_flush(handle) == 1, nbd_flush(handle, 0) != 0 {
            logger.error("nbd \(uri): flush on disconnect failed: \(NBDStore.lastError())")
        }
        _ = nbd_shutdown(handle, 0)
        nbd_close(handle)
        self.handle = nil
    }
}
