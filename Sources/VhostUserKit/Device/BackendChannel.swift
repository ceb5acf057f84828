#if canImport(Glibc)
import Glibc
#endif

/// The back-end request channel (SET_BACKEND_REQ_FD): how the daemon speaks first, e.g. to tell the
/// front-end that the config space changed. Safe to use from any thread: `send` waits (up to a second)
/// for room on the socket; `post` never waits, and the control thread sends what was posted.
public final class BackendChannel: Sendable {
    private struct State {
        let channel: MessageChannel
        /// A send timed out or failed part-way: the stream is out of step and carries nothing more.
        var broken = false
    }
    private let state: Locked<State>
    /// Requests posted for the control thread to send, and the eventfd that tells it.
    private let outbox = Locked<[(request: BackendRequest, payload: [UInt8])]>([])
    let posted: EventFD

    /// How many posted requests may wait for the control thread; `post` refuses more.
    public static let outboxCapacity = 64

    /// How long a send waits for the front-end to make room before the channel is given up.
    public static let sendTimeoutMilliseconds: Int32 = 1000

    public init(socket: OwnedDescriptor) throws(SystemError) {
        state = Locked(State(channel: MessageChannel(socket: socket)))
        posted = try EventFD()
    }

    /// Sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, so the front-end re-reads the config space and
    /// raises a config interrupt in the guest. No reply is requested: the front-end may be busy
    /// sending us a request, and waiting here must never deadlock the two sides.
    public func configChanged() throws(VhostUserError) {
        try send(.configChangeMsg)
    }

    /// Sends a back-end request with no descriptors. A front-end that does not read the channel cannot
    /// block the caller for longer than `sendTimeoutMilliseconds`; after that (or any failure) the
    /// channel is broken and later sends fail at once.
    public func send(_ request: BackendRequest, payload: [UInt8] = []) throws(VhostUserError) {
        let header = MessageHeader(request: request.rawValue, flags: .version1, size: UInt32(payload.count))
        try state.withLock { (s) throws(VhostUserError) in
            guard !s.broken else { throw .system(SystemError("sendmsg", errno: EPIPE)) }
            do throws(VhostUserError) {
                try s.channel.send(header, payload: payload, timeoutMilliseconds: Self.sendTimeoutMilliseconds)
            } catch {
                s.broken = true
                throw error
            }
        }
    }

    /// Queues a back-end request for the daemon's control thread to send, without waiting: for queue
    /// workers, which must never stall their rings on a front-end that is slow to read. Returns false
    /// when `outboxCapacity` requests are already waiting.
    @discardableResult
    public func post(_ request: BackendRequest, payload: [UInt8] = []) -> Bool {
        let queued = outbox.withLock { (box) -> Bool in
            guard box.count < Self.outboxCapacity else { return false }
            box.append((request, payload))
            return true
        }
        if queued { posted.signal() }
        return queued
    }

    /// Sends what was posted, in order (the control thread, when `posted` is readable). A failure
    /// breaks the channel, as in `send`; the rest of the outbox is dropped with it.
    func sendPosted() throws(VhostUserError) {
        posted.drain()
        let requests = outbox.withLock { box in
            defer { box.removeAll() }
            return box
        }
        for (request, payload) in requests { try send(request, payload: payload) }
    }
}
