/// The back-end request channel (SET_BACKEND_REQ_FD): how the daemon speaks first, e.g. to tell the
/// front-end that the config space changed. Safe to use from any thread.
public final class BackendChannel: Sendable {
    private let channel: Locked<MessageChannel>

    public init(socket: OwnedDescriptor) { channel = Locked(MessageChannel(socket: socket)) }

    /// Sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, so the front-end re-reads the config space and
    /// raises a config interrupt in the guest. No reply is requested: the front-end may be busy
    /// sending us a request, and waiting here must never deadlock the two sides.
    public func configChanged() throws(VhostUserError) {
        try send(.configChangeMsg)
    }

    /// Sends a back-end request with no descriptors.
    public func send(_ request: BackendRequest, payload: [UInt8] = []) throws(VhostUserError) {
        let header = MessageHeader(request: request.rawValue, flags: .version1, size: UInt32(payload.count))
        try channel.withLock { (c) throws(VhostUserError) in try c.send(header, payload: payload) }
    }
}
