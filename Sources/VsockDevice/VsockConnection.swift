import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Which connection a packet belongs to: the guest's port and the peer's address (the host, CID 2,
/// or another guest of the same group).
public struct ConnectionKey: Hashable, Sendable {
    public var guestPort: UInt32
    public var peerCID: UInt64
    public var peerPort: UInt32
    public init(guestPort: UInt32, peerCID: UInt64, peerPort: UInt32) {
        self.guestPort = guestPort
        self.peerCID = peerCID
        self.peerPort = peerPort
    }
}

/// One vsock connection of a guest and its host socket: the state both credit windows need, and the
/// guest's bytes not yet written to the host (at most `bufAlloc`, the window the guest was given; the
/// buffer starts at 64 KiB and grows towards that only while a host reader falls behind).
///
/// Guest → host: RW payloads go into `toHost` and on to the socket as fast as it takes them; `fwdCnt`
/// counts what left, and the guest's credit is `bufAlloc - (its tx_cnt - fwdCnt)`, so a slow host
/// reader throttles the guest without the daemon holding more than `bufAlloc`. Host → guest: the socket
/// is read only while the guest's window (`peerBufAlloc - (txCnt - peerFwdCnt)`) is open.
final class VsockConnection {
    enum State: UInt8 {
        /// Host-initiated: REQUEST sent to the guest, waiting for RESPONSE (or RST).
        case connecting = 1
        /// Data flows.
        case established = 2
        /// Guest-initiated to another guest: waiting for that guest to accept (RESPONSE owed).
        case awaitingPeer = 3
    }

    let key: ConnectionKey
    let type: VirtioVsock.SocketType
    var state: State
    /// The host side: a unix socket (stream or seqpacket), or one end of a socket pair to another guest.
    var socket: OwnedDescriptor?
    var watch: Watch?
    /// What `watch` is watched for now (changed only when it differs).
    var interest: Readiness = []

    // Guest → host.
    var toHost: ByteRing
    /// SEQPACKET: the lengths of complete messages at the front of `toHost`, oldest first; the bytes
    /// after them are a message still arriving.
    var messageLengths: [Int] = []
    var partialMessage = 0
    let bufAlloc: UInt32
    var fwdCnt: UInt32 = 0
    /// `fwdCnt` as the guest last heard it (in any packet's header).
    var reportedFwdCnt: UInt32 = 0

    // Host → guest.
    var peerBufAlloc: UInt32 = 0
    var peerFwdCnt: UInt32 = 0
    var txCnt: UInt32 = 0
    /// SEQPACKET: a message read from the host, sent to the guest in pieces as credit and buffers allow.
    var toGuest: ByteRing
    /// In the handler's list of connections that may have bytes for the guest.
    var queuedForGuest = false

    /// SHUTDOWN flags the guest sent (it will not receive / will not send any more).
    var guestShutdown: UInt32 = 0
    /// The host side hung up or hit end of file: nothing more to read from it.
    var hostEnded = false
    /// SHUTDOWN(SEND) was sent to the guest for `hostEnded`.
    var shutdownSent = false
    /// The host side hung up (reported by epoll): it is watched only while the connection wants to
    /// read or write it, which then meets the end of file or the error.
    var hungUp = false
    /// shutdown(SHUT_WR) was done on the host socket after the guest's SHUTDOWN(SEND).
    var hostWriteShut = false
    /// A CREDIT_UPDATE for this connection waits in the control queue.
    var creditUpdateQueued = false

    init(key: ConnectionKey, type: VirtioVsock.SocketType, state: State, socket: OwnedDescriptor?, bufAlloc: UInt32) {
        self.key = key
        self.type = type
        self.state = state
        self.socket = socket
        self.bufAlloc = bufAlloc
        toHost = ByteRing(capacity: min(Int(bufAlloc), Self.initialHostBuffer))
        toGuest = ByteRing(capacity: type == .seqpacket ? VirtioVsock.maxPacketPayload : 1)
    }

    /// What `toHost` holds at first: most host readers keep up, and the socket takes the bytes.
    static let initialHostBuffer = 64 << 10

    /// Whether `length` more guest bytes fit the window the guest was given.
    func hostWindowHolds(_ length: Int) -> Bool { toHost.count + length <= Int(bufAlloc) }

    /// Grows `toHost` (doubling, at most to `bufAlloc`) so that `length` more bytes fit; the caller
    /// checked `hostWindowHolds`.
    func reserveForHost(_ length: Int) {
        guard toHost.free < length else { return }
        toHost.grow(to: min(Int(bufAlloc), max(toHost.capacity * 2, toHost.count + length)))
    }

    /// How many bytes the guest can take now.
    var peerCredit: UInt32 {
        let inFlight = txCnt &- peerFwdCnt
        return inFlight >= peerBufAlloc ? 0 : peerBufAlloc - inFlight
    }

    /// Takes the guest's view of its receive window from a packet it sent.
    func noteCredit(_ header: VsockHeader) {
        peerBufAlloc = header.bufAlloc
        peerFwdCnt = header.fwdCnt
    }

    /// Whether the host side may have bytes for the guest (the socket is peeked to know).
    var hasBytesForGuest: Bool {
        !toGuest.isEmpty || (!hostEnded && guestShutdown & VirtioVsock.shutdownReceive == 0)
    }

    /// Whether guest bytes wait for the host socket (SEQPACKET: whole messages).
    var hasBytesForHost: Bool { type == .stream ? !toHost.isEmpty : !messageLengths.isEmpty }

    /// Whether the host socket should be read now: established, the guest still receiving and with
    /// credit, nothing of an earlier message left over.
    var wantsHostRead: Bool {
        state == .established && !hostEnded && guestShutdown & VirtioVsock.shutdownReceive == 0
            && peerCredit > 0 && toGuest.isEmpty
    }
}
