import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The VMM side of the vhost-user protocol, for tests and benchmarks: typed requests, replies with
/// a timeout, and raw bytes for malformed messages.
public final class FakeFrontend {
    public let channel: MessageChannel
    /// Set once REPLY_ACK is negotiated and the profile wants an ack for every message.
    public var needReplyOnEverything = false
    public private(set) var protocolFeatures: ProtocolFeatures = []
    public private(set) var features: UInt64 = 0
    /// The memory regions this connection has shared (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG): like
    /// QEMU's shadow table, what a re-initialisation after RESET_DEVICE does not send again.
    public private(set) var sharedRegions: [MemoryRegionDescription] = []
    /// How long to wait for any reply.
    public var replyTimeoutMilliseconds: Int32 = 5000
    /// Called with each typed request before it is sent; throwing stops the send. A soak uses it to
    /// cut a set-up short at a chosen message, as a front-end that dies part-way would.
    public var willSend: ((FrontendRequest) throws -> Void)?
    /// The in-process daemon serving this connection, when a `DeviceFixture` made it: kept running
    /// while the front-end (or a queue it set up) is in use.
    public var daemon: InProcessDaemon?

    public init(socket: OwnedDescriptor) { channel = MessageChannel(socket: socket) }

    /// Connects to a daemon's socket path.
    public static func connect(to path: String) throws -> FakeFrontend {
        FakeFrontend(socket: try UnixListener.connect(to: path))
    }

    // MARK: Raw messages

    /// Sends a request. `needReply` nil means "as the profile says".
    public func send(_ request: FrontendRequest, payload: [UInt8] = [], descriptors: [Int32] = [], needReply: Bool? = nil) throws {
        try willSend?(request)
        var flags: MessageHeader.Flags = .version1
        if needReply ?? needReplyOnEverything { flags.insert(.needReply) }
        try channel.send(MessageHeader(request: request.rawValue, flags: flags, size: UInt32(payload.count)),
                         payload: payload, descriptors: descriptors)
    }

    /// Sends arbitrary bytes (possibly not a valid message) with `descriptors` attached.
    public func sendRaw(_ bytes: [UInt8], descriptors: [Int32] = []) throws {
        let n = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { vhu_sendmsg_fds(channel.socket.rawValue, raw.baseAddress, raw.count, $0.baseAddress, Int32($0.count), 0) }
        }
        guard n == bytes.count else { throw FakeFrontendError.system("sendmsg", errno) }
    }

    /// Receives the reply to `request` within the reply timeout.
    public func receiveReply(to request: FrontendRequest) throws -> Message {
        guard waitReadable(channel.socket.rawValue, timeoutMilliseconds: replyTimeoutMilliseconds) else {
            throw FakeFrontendError.timeout("the reply to \(request)")
        }
        guard let reply = try channel.receive() else { throw FakeFrontendError.unexpectedReply("connection closed instead of the reply to \(request)") }
        guard reply.header.request == request.rawValue, reply.header.flags.contains(.reply) else {
            throw FakeFrontendError.unexpectedReply("request \(reply.header.request) flags 0x\(String(reply.header.flags.rawValue, radix: 16)) to \(request)")
        }
        return reply
    }

    /// Ends the connection as a front-end that exits would (shutdown(2) both ways): the daemon reads end of
    /// file; the descriptor itself is closed with the front-end.
    public func disconnect() {
        _ = shutdown(channel.socket.rawValue, Int32(SHUT_RDWR))
    }

    /// Whether the daemon closed the connection (reads until EOF, bounded by the reply timeout).
    public func isClosedByPeer() -> Bool {
        guard waitReadable(channel.socket.rawValue, timeoutMilliseconds: replyTimeoutMilliseconds) else { return false }
        var byte: UInt8 = 0
        return recv(channel.socket.rawValue, &byte, 1, Int32(MSG_DONTWAIT)) == 0
    }

    /// Sends a request without a payload reply; when an ack is asked for, waits for it and returns it
    /// (0 = success), else returns nil.
    @discardableResult
    public func command(_ request: FrontendRequest, payload: [UInt8] = [], descriptors: [Int32] = [], needReply: Bool? = nil) throws -> UInt64? {
        let wantsAck = (needReply ?? needReplyOnEverything) && protocolFeatures.contains(.replyAck)
        try send(request, payload: payload, descriptors: descriptors, needReply: needReply)
        guard wantsAck else { return nil }
        let reply = try receiveReply(to: request)
        return try U64Payload(decoding: reply.payload, for: request).value
    }

    /// Sends a command and throws unless the daemon acked it with success (asks for the ack).
    public func commandAcked(_ request: FrontendRequest, payload: [UInt8] = [], descriptors: [Int32] = []) throws {
        let ack = try command(request, payload: payload, descriptors: descriptors, needReply: true)
        guard ack == 0 else { throw FakeFrontendError.unexpectedReply("\(request) failed with ack \(ack.map(String.init) ?? "none")") }
    }

    /// Sends a GET-style request and returns its reply.
    public func query(_ request: FrontendRequest, payload: [UInt8] = []) throws -> Message {
        try send(request, payload: payload)
        return try receiveReply(to: request)
    }

    // MARK: Typed requests

    public func getFeatures() throws -> UInt64 { try U64Payload(decoding: try query(.getFeatures).payload, for: .getFeatures).value }
    public func getProtocolFeatures() throws -> ProtocolFeatures {
        ProtocolFeatures(rawValue: try U64Payload(decoding: try query(.getProtocolFeatures).payload, for: .getProtocolFeatures).value)
    }
    public func getQueueNum() throws -> UInt64 { try U64Payload(decoding: try query(.getQueueNum).payload, for: .getQueueNum).value }
    public func getMaxMemSlots() throws -> UInt64 { try U64Payload(decoding: try query(.getMaxMemSlots).payload, for: .getMaxMemSlots).value }
    public func getStatus() throws -> UInt64 { try U64Payload(decoding: try query(.getStatus).payload, for: .getStatus).value }

    public func setFeatures(_ value: UInt64) throws {
        try command(.setFeatures, payload: U64Payload(value).encoded())
        features = value
    }
    public func setProtocolFeatures(_ value: ProtocolFeatures) throws {
        try command(.setProtocolFeatures, payload: U64Payload(value.rawValue).encoded())
        protocolFeatures = value
    }
    public func setOwner() throws { try command(.setOwner) }
    public func setStatus(_ value: UInt64) throws { try command(.setStatus, payload: U64Payload(value).encoded()) }

    public func setMemTable(_ memory: FakeGuestMemory) throws {
        let fds = memory.regions.map { _ in memory.file.rawValue }
        try command(.setMemTable, payload: MemoryTable(regions: memory.regions).encoded(), descriptors: fds)
        sharedRegions = memory.regions
    }
    public func addMemReg(_ region: MemoryRegionDescription, file: Int32) throws {
        try command(.addMemReg, payload: SingleMemoryRegion(region).encoded(), descriptors: [file])
        sharedRegions.append(region)
    }
    public func remMemReg(_ region: MemoryRegionDescription) throws {
        try command(.remMemReg, payload: SingleMemoryRegion(region).encoded())
        sharedRegions.removeAll { $0 == region }
    }

    public func setVringNum(_ index: Int, _ size: Int) throws {
        try command(.setVringNum, payload: VringState(index: UInt32(index), num: UInt32(size)).encoded())
    }
    public func setVringBase(_ index: Int, _ base: UInt16) throws {
        try command(.setVringBase, payload: VringState(index: UInt32(index), num: UInt32(base)).encoded())
    }
    public func setVringAddr(_ address: VringAddress) throws { try command(.setVringAddr, payload: address.encoded()) }
    public func setVringKick(_ index: Int, _ fd: EventFD?) throws { try setVringFile(.setVringKick, index, fd) }
    public func setVringCall(_ index: Int, _ fd: EventFD?) throws { try setVringFile(.setVringCall, index, fd) }
    public func setVringErr(_ index: Int, _ fd: EventFD?) throws { try setVringFile(.setVringErr, index, fd) }
    private func setVringFile(_ request: FrontendRequest, _ index: Int, _ fd: EventFD?) throws {
        try command(request, payload: VringFile(index: UInt32(index), hasFile: fd != nil).payload.encoded(),
                    descriptors: fd.map { [$0.rawValue] } ?? [])
    }
    public func setVringEnable(_ index: Int, _ enabled: Bool) throws {
        try command(.setVringEnable, payload: VringState(index: UInt32(index), num: enabled ? 1 : 0).encoded())
    }
    /// GET_VRING_BASE: stops the ring and returns the next available index.
    public func getVringBase(_ index: Int) throws -> UInt16 {
        let reply = try query(.getVringBase, payload: VringState(index: UInt32(index), num: 0).encoded())
        return UInt16(truncatingIfNeeded: try VringState(decoding: reply.payload, for: .getVringBase).num)
    }
    /// VHOST_USER_VRING_KICK: a kick sent in-band instead of through the eventfd.
    public func kickInBand(_ index: Int) throws {
        try command(.vringKick, payload: VringState(index: UInt32(index), num: 0).encoded())
    }
    public func setBackendReqFd(_ fd: Int32) throws { try command(.setBackendReqFd, descriptors: [fd]) }

    public func getConfig(offset: Int, count: Int) throws -> ConfigPayload {
        let reply = try query(.getConfig, payload: ConfigPayload(offset: UInt32(offset), data: [UInt8](repeating: 0, count: count)).encoded())
        return try ConfigPayload(decoding: reply.payload, for: .getConfig)
    }
    /// SET_CONFIG, asking for an ack (returned; nil when REPLY_ACK was not negotiated).
    public func setConfig(offset: Int, bytes: [UInt8]) throws -> UInt64? {
        try command(.setConfig, payload: ConfigPayload(offset: UInt32(offset), data: bytes).encoded(), needReply: true)
    }

    public func getInflightFd(queueCount: Int, queueSize: Int) throws -> (InflightDescription, OwnedDescriptor?) {
        let reply = try query(.getInflightFd, payload: InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: UInt16(queueCount), queueSize: UInt16(queueSize)).encoded())
        return (try InflightDescription(decoding: reply.payload, for: .getInflightFd), reply.descriptors.first)
    }
    public func setInflightFd(_ description: InflightDescription, file: Int32) throws {
        try command(.setInflightFd, payload: description.encoded(), descriptors: [file])
    }
}
