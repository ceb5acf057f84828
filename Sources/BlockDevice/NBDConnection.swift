import CNBD
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An NBD engine's connection, never blocking the queue worker: made with libnbd's asynchronous
/// connect (the handshake advances with the socket's readiness, like any command), dropped when dead
/// and made again, at most every half second; it logs a lost connection and a failed connect once,
/// and the recovery once.
struct NBDConnection {
    let uri: String
    let retryNanoseconds: UInt64
    let logger: Logger
    private(set) var handle: OpaquePointer?
    /// The handshake finished on `handle`: commands may be issued.
    private(set) var isConnected = false
    /// When the next connect may start (monotonic ns).
    private(set) var nextAttempt: UInt64 = 0
    /// Down since the last connection (logged), and the last failed attempt's error (logged once).
    private var reportedDown = false
    private var lastFailure: String?
    /// Why the connect in progress failed, taken when libnbd said so (its error is per thread and call).
    private var connectError: String?

    init(uri: String, retrySeconds: Int, logger: Logger) {
        self.uri = uri
        retryNanoseconds = UInt64(max(retrySeconds, 0)) * 1_000_000_000
        self.logger = logger
    }

    /// Starts connecting when there is no connection and the last attempt is half a second old.
    mutating func connectIfDue(now: UInt64) {
        guard handle == nil, now >= nextAttempt else { return }
        nextAttempt = now + 500_000_000
        guard let h = nbd_create() else { return noteFailure("cannot create an NBD handle: \(NBDStore.lastError())") }
        // Simple replies: a read's data follows one 16-byte header (structured replies cost libnbd several
        // reads per reply; nothing here uses what they add). No zeroing of read buffers before the read
        // (a failed read answers the guest IOERR whatever the buffer holds).
        _ = nbd_set_request_structured_replies(h, false)
        _ = nbd_set_pread_initialize(h, false)
        guard nbd_aio_connect_uri(h, uri) == 0 else {
            let message = NBDStore.lastError()
            nbd_close(h)
            return noteFailure("cannot connect: \(message)")
        }
        handle = h
        isConnected = false
        connectError = nil
        noteProgress()
    }

    /// The socket libnbd uses now (-1: none) and the direction it waits for.
    var socket: (fd: Int32, direction: UInt32) {
        guard let handle else { return (-1, 0) }
        return (nbd_aio_get_fd(handle), nbd_aio_get_direction(handle))
    }

    /// Lets libnbd read and write as the socket allows; completion callbacks run in here. Replies go
    /// first (they may change what is left to send); a hang-up or error goes to the direction libnbd
    /// waits for, which then finds it.
    mutating func notify(_ readiness: NBDWaitSet.SocketReadiness) {
        guard let handle, readiness.any else { return }
        var r: Int32 = 0
        if wants(LIBNBD_AIO_DIRECTION_READ) && (readiness.readable || readiness.hangUp) { r = nbd_aio_notify_read(handle) }
        if r == 0 && wants(LIBNBD_AIO_DIRECTION_WRITE) && (readiness.writable || readiness.hangUp) { r = nbd_aio_notify_write(handle) }
        if r != 0 && !isConnected && connectError == nil { connectError = NBDStore.lastError() }
        noteProgress()
    }

    private func wants(_ direction: Int32) -> Bool {
        guard let handle else { return false }
        return nbd_aio_get_direction(handle) & UInt32(direction) != 0
    }

    /// Notes a finished handshake (logs the recovery once).
    private mutating func noteProgress() {
        guard !isConnected, let handle, nbd_aio_is_ready(handle) == 1 else { return }
        isConnected = true
        if reportedDown { logger.notice("nbd \(uri): connected again") }
        reportedDown = false
        lastFailure = nil
    }

    private mutating func noteFailure(_ message: String) {
        if lastFailure != message { logger.error("nbd \(uri): \(message); retrying every 0.5 s") }
        reportedDown = true
        lastFailure = message
    }

    /// Whether the connection (or the connect in progress) died: the server went away or broke the protocol.
    var isDead: Bool {
        guard let handle else { return false }
        return nbd_aio_is_dead(handle) == 1 || nbd_aio_is_closed(handle) == 1
    }

    /// Closes a dead connection; the next `connectIfDue` makes a new one, at once after a lost connection.
    mutating func drop() {
        guard let handle else { return }
        if isConnected {
            if !reportedDown { logger.error("nbd \(uri): connection lost; reconnecting") }
            reportedDown = true
            nextAttempt = 0
        } else {
            noteFailure("cannot connect: \(connectError ?? NBDStore.lastError())")
        }
        nbd_close(handle)
        self.handle = nil
        isConnected = false
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
        if isConnected, !isDead, nbd_can_flush(handle) == 1, nbd_flush(handle, 0) != 0 {
            logger.error("nbd \(uri): flush on disconnect failed: \(NBDStore.lastError())")
        }
        if isConnected { _ = nbd_shutdown(handle, 0) }
        nbd_close(handle)
        self.handle = nil
        isConnected = false
    }
}
