/// virtio-vsock's numbers (virtio 1.3, section 5.10 "Socket Device").
public enum VirtioVsock {
    public static let deviceID: UInt32 = 19
    /// Queue indices: the driver's receive buffers, its transmitted packets, and the event queue.
    public static let receiveQueue = 0, transmitQueue = 1, eventQueue = 2

    /// VIRTIO_VSOCK_F_STREAM: stream sockets (implied when no type feature is offered).
    public static let featureStream: UInt64 = 1 << 0
    /// VIRTIO_VSOCK_F_SEQPACKET: message-boundary sockets.
    public static let featureSeqpacket: UInt64 = 1 << 1

    /// The host's CID (VMADDR_CID_HOST): the unix-socket side of this daemon.
    public static let hostCID: UInt64 = 2
    /// CIDs 0 to 2 and 0xffffffff are reserved; a guest has one of the others.
    public static func isValidGuestCID(_ cid: UInt64) -> Bool { cid > 2 && cid < 0xffff_ffff }

    /// The size of `struct virtio_vsock_hdr` (packed, little-endian).
    public static let headerSize = 44
    /// The config space: `le64 guest_cid`.
    public static let configSize = 8
    /// The most payload one packet carries (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
    public static let maxPacketPayload = 64 << 10

    /// `virtio_vsock_hdr.op`.
    public enum Op: UInt16, Sendable {
        case request = 1, response, rst, shutdown, rw, creditUpdate, creditRequest
    }

    /// `virtio_vsock_hdr.type`.
    public enum SocketType: UInt16, Sendable {
        case stream = 1, seqpacket = 2
    }

    /// SHUTDOWN flags: the sender will not receive / will not send any more.
    public static let shutdownReceive: UInt32 = 1, shutdownSend: UInt32 = 2
    public static let shutdownBoth: UInt32 = 3
    /// RW flags on SEQPACKET: the last packet of a message (EOM), and of a record (EOR, MSG_EOR).
    public static let seqEOM: UInt32 = 1, seqEOR: UInt32 = 2

    /// `virtio_vsock_event.id`: the transport was reset (after a migration or a back-end restart).
    public static let eventTransportReset: UInt32 = 0
}
