import Logging
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// virtio-vsock for one guest: stream and seqpacket sockets between the guest and host programs on
/// unix sockets (`HostSockets`), and between guests of one `VsockHub`. The rx, tx and event queues are
/// one group; the connection table belongs to the device between group runs, so it survives a group
/// restart, and is closed (with a transport reset for the guest) when the front-end leaves.
public final class VsockDevice: VhostUserDevice {
    public struct Options: Sendable {
        /// The receive window each connection gives the guest (buf_alloc): the most guest bytes held
        /// for a host socket that does not read (held in a buffer that grows to it only while the
        /// host falls behind).
        public var bufferBytes: UInt32 = 1 << 20
        /// The most connections at once; further requests are refused (RST).
        public var maxConnections = 4096
        /// Offer VIRTIO_VSOCK_F_SEQPACKET.
        public var seqpacket = true
        public init() {}
    }

    public let guestCID: UInt64
    public let options: Options
    let host: HostSockets?
    let hub: VsockHub?
    let member: VsockHub.Member?
    let logger: Logger
    /// What a running handler borrows.
    let table: Locked<VsockTable>
    /// How many connections are open, as the handler last saw (for tests and logs).
    let openConnections = Atomic<Int>(0)

    public enum SetupError: Error, CustomStringConvertible {
        case invalidCID(UInt64)
        case cidTaken(UInt64)
        public var description: String {
            switch self {
            case let .invalidCID(cid): "guest CID \(cid) is reserved (use 3 to 4294967294)"
            case let .cidTaken(cid): "guest CID \(cid) is already in this group"
            }
        }
    }

    /// A device for the guest `guestCID`, reaching the host through `host` (nil: no host side, every
    /// connection to CID 2 is refused) and other guests through `hub`.
    public init(guestCID: UInt64, host: HostSockets?, hub: VsockHub? = nil, options: Options = Options(),
                logger: Logger = Logger(label: "vhost-user-vsock")) throws {
        guard VirtioVsock.isValidGuestCID(guestCID) else { throw SetupError.invalidCID(guestCID) }
        self.guestCID = guestCID
        self.host = host
        self.hub = hub
        if let hub {
            guard let member = hub.join(guestCID) else { throw SetupError.cidTaken(guestCID) }
            self.member = member
        } else {
            member = nil
        }
        self.options = options
        self.logger = logger
        table = Locked(VsockTable())
    }

    public var virtioDeviceID: UInt32 { VirtioVsock.deviceID }
    public var deviceFeatures: UInt64 { VirtioVsock.featureStream | (options.seqpacket ? VirtioVsock.featureSeqpacket : 0) }
    public var queueCount: Int { 3 }
    public var maxQueueSize: Int { 1024 }
    public var configSize: Int { VirtioVsock.configSize }
    public var queueGroups: [[Int]] { [[VirtioVsock.receiveQueue, VirtioVsock.transmitQueue, VirtioVsock.eventQueue]] }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        let bytes = withUnsafeBytes(of: guestCID.littleEndian) { Array($0) }
        return Array(bytes[offset..<offset + count])
    }

    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        VsockHandler(device: self, seqpacket: features & VirtioVsock.featureSeqpacket != 0)
    }

    /// The front-end left or reset the device: every connection is closed (host programs see their
    /// sockets close) and the guest gets a transport reset when its queues run again.
    public func reset() {
        table.withLock { $0.closeAll(); $0.transportResetDue = true }
        openConnections.store(0, ordering: .relaxed)
    }

    /// How many connections are open: while the queues run, as of the handler's last event.
    public var connectionCount: Int {
        table.withLock { $0.connections.isEmpty } ? openConnections.load(ordering: .relaxed) : table.withLock { $0.connections.count }
    }
}

/// The device's connection table, borrowed by the running handler.
final class VsockTable: @unchecked Sendable {  // used under the device's lock or by the one handler that took it
    var connections: [ConnectionKey: VsockConnection] = [:]
    /// Host programs that have not finished their CONNECT line.
    var clients: [HostClient] = []
    /// The next port for a host-initiated connection (Firecracker starts at 2^30 too).
    var nextHostPort: UInt32 = 1 << 30
    /// A transport reset is owed to the guest: a new front-end (or a new daemon) serves it.
    var transportResetDue = true
    /// Connections a loaded state named: reset towards the guest when the queues run.
    var staleConnections: [ConnectionKey: VirtioVsock.SocketType] = [:]
    /// Packets for the guest a stopped group had not delivered yet.
    var pendingControl: [VsockHandler.Outgoing] = []

    func closeAll() {
        for connection in connections.values { connection.socket = nil }
        connections.removeAll()
        clients.removeAll()
        pendingControl.removeAll()
    }
}
