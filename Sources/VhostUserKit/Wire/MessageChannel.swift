import CVhostUser
#if canImport(Glibc)
import Glibc
#endif

/// Sends and receives framed vhost-user messages, with SCM_RIGHTS descriptors, over a connected
/// unix stream socket. Nothing outside this file touches the socket's bytes. One owner at a time: two
/// threads sending at once would interleave their bytes (BackendChannel shares one behind a lock).
public final class MessageChannel {
    /// The most descriptors one message may carry (a memory table has at most 8).
    public static let maxDescriptors = 8
    public let socket: OwnedDescriptor
    /// A descriptor whose readiness abandons any wait for the peer (the daemon's shutdown event), so a
    /// peer that stops half-way through a message or never reads its replies cannot hold the thread.
    private let interrupt: Int32?

    public init(socket: OwnedDescriptor, interrupt: Int32? = nil) {
        self.socket = socket
        self.interrupt = interrupt
    }

    /// Receives the next message, or nil when the peer closed the connection between messages.
    /// Framing errors (a truncated header or payload, an oversized payload, a wrong version, too
    /// many descriptors) throw; any descriptors received with the broken message are closed.
    public func receive() throws(VhostUserError) -> Message? {
        var descriptors: [OwnedDescriptor] = []
        var headerBytes = [UInt8](repeating: 0, count: MessageHeader.size)
        let got = try receiveFully(into: &headerBytes, descriptors: &descriptors)
        if got == 0 { return nil }
        guard got == MessageHeader.size else { throw .truncatedMessage(expected: MessageHeader.size, received: got) }
        let header = headerBytes.withUnsafeBytes { MessageHeader(decoding: $0) }
        guard header.flags.version == 1 else { throw .badVersion(flags: header.flags.rawValue) }
        guard header.size <= MessageHeader.maxPayloadSize else {
            throw .payloadTooLarge(request: header.request, size: header.size)
        }
        var payload = [UInt8](repeating: 0, count: Int(header.size))
        if header.size > 0 {
            let n = try receiveFully(into: &payload, descriptors: &descriptors)
            guard n == payload.count else { throw .truncatedMessage(expected: MessageHeader.size + payload.count, received: MessageHeader.size + n) }
        }
        return Message(header: header, payload: payload, descriptors: descriptors)
    }

    /// Reads until `buffer` is full or the peer closes; returns the byte count.
    private func receiveFully(into buffer: inout [UInt8], descriptors: inout [OwnedDescriptor]) throws(VhostUserError) -> Int {
        var filled = 0
        var fds = [Int32](repeating: -1, count: Self.maxDescriptors)
        while filled < buffer.count {
            try waitForPeer(events: Int16(POLLIN), timeoutMilliseconds: -1)
            var count: Int32 = 0
            var truncated: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { raw in
                vhu_recvmsg_fds(socket.rawValue, raw.baseAddress! + filled, raw.count - filled, &fds, Int32(Self.maxDescriptors), &count, &truncated)
            }
            for i in 0..<Int(count) { descriptors.append(OwnedDescriptor(fds[i])) }
            if n < 0 {
                if errno == ECONNRESET { return filled }
                throw .system(SystemError("recvmsg", errno: errno))
            }
            if truncated != 0 || descriptors.count > Self.maxDescriptors { throw .tooManyFileDescriptors }
            if n == 0 { return filled }
            filled += n
        }
        return filled
    }

    /// Sends one message, its descriptors with the first byte. Waits for room in the socket for at most
    /// `timeoutMilliseconds` each time it is full (-1: as long as it takes, or until the interrupt).
    /// A message that could not be sent whole leaves the stream out of step: the caller must drop it.
    public func send(_ header: MessageHeader, payload: [UInt8] = [], descriptors: [Int32] = [],
                     timeoutMilliseconds: Int32 = -1) throws(VhostUserError) {
        let bytes = header.encoded() + payload
        let nonblocking: Int32 = interrupt != nil || timeoutMilliseconds >= 0 ? 1 : 0
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                descriptors.withUnsafeBufferPointer { fds in
                    vhu_sendmsg_fds(socket.rawValue, raw.baseAddress! + sent, raw.count - sent,
                                    sent == 0 ? fds.baseAddress : nil, sent == 0 ? Int32(fds.count) : 0, nonblocking)
                }
            }
            if n < 0 && errno == EAGAIN {
                try waitForPeer(events: Int16(POLLOUT), timeoutMilliseconds: timeoutMilliseconds)
                continue
            }
            guard n > 0 else { throw .system(SystemError("sendmsg", errno: n < 0 ? errno : EPIPE)) }
            sent += n
        }
    }

    /// Waits until the socket is ready for `events`; throws when the interrupt fires first or the
    /// timeout passes. Without an interrupt or a timeout the blocking socket call does the waiting.
    private func waitForPeer(events: Int16, timeoutMilliseconds: Int32) throws(VhostUserError) {
        guard interrupt != nil || timeoutMilliseconds >= 0 else { return }
        var fds = (pollfd(fd: socket.rawValue, events: events, revents: 0),
                   pollfd(fd: interrupt ?? -1, events: Int16(POLLIN), revents: 0))
        let n = try VhostUserError.fromSystem { () throws(SystemError) in
            try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemError) in
                try systemCall("poll") { poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, timeoutMilliseconds) }
            }
        }
        if fds.1.revents != 0 { throw .interrupted }
        if n == 0 { throw .system(SystemError("sendmsg", errno: ETIMEDOUT)) }
    }

    /// Sends a reply to `request`: REPLY flag set, version 1.
    public func reply(to request: UInt32, payload: [UInt8], descriptors: [Int32] = []) throws(VhostUserError) {
        try send(MessageHeader(request: request, flags: [.version1, .reply], size: UInt32(payload.count)),
                 payload: payload, descriptors: descriptors)
    }
}
