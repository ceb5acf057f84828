import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

extension KitTests {
@Suite("wire layer")
struct WireTests {
    /// Encodes, checks the size and bytes, decodes and checks the value comes back.
    func roundTrip<P: FixedPayload & Equatable>(_ value: P, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let encoded = value.encoded()
        #expect(encoded.count == P.wireSize, sourceLocation: sourceLocation)
        #expect(encoded == bytes, sourceLocation: sourceLocation)
        #expect(try P(decoding: encoded, for: .getFeatures) == value, sourceLocation: sourceLocation)
    }

    func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    @Test("the message header is 12 little-endian bytes: request, flags, size")
    func headerRoundTrip() {
        let h = MessageHeader(request: 0x0102_0304, flags: [.version1, .needReply], size: 0x28)
        let bytes = h.encoded()
        #expect(bytes == le32(0x0102_0304) + le32(0x9) + le32(0x28))
        #expect(bytes.withUnsafeBytes { MessageHeader(decoding: $0) } == h)
        #expect(h.flags.version == 1)
        #expect(MessageHeader.Flags(rawValue: 0x6).version == 2)
    }

    @Test("U64Payload round-trips")
    func u64() throws { try roundTrip(U64Payload(0x1122_3344_5566_7788), le64(0x1122_3344_5566_7788)) }

    @Test("VringState round-trips as two u32")
    func vringState() throws { try roundTrip(VringState(index: 3, num: 0x100), le32(3) + le32(0x100)) }

    @Test("VringAddress round-trips as index, flags and four u64")
    func vringAddress() throws {
        let a = VringAddress(index: 1, flags: 1, descriptorTable: 0x1000, usedRing: 0x3000, availableRing: 0x2000, log: 0x4000)
        try roundTrip(a, le32(1) + le32(1) + le64(0x1000) + le64(0x3000) + le64(0x2000) + le64(0x4000))
    }

    @Test("VringFile keeps the queue index in bits 0-7 and 'no fd' in bit 8")
    func vringFile() {
        #expect(VringFile(index: 5, hasFile: true).payload.value == 5)
        #expect(VringFile(index: 5, hasFile: false).payload.value == 0x105)
        #expect(VringFile(U64Payload(0x107)) == VringFile(index: 7, hasFile: false))
        #expect(VringFile(U64Payload(0x0ff)) == VringFile(index: 255, hasFile: true))
    }

    @Test("MemoryRegionDescription round-trips as four u64")
    func memoryRegion() throws {
        let r = MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 0x20_0000, userAddress: 0x7f00_0000_0000, mmapOffset: 0x1000)
        try roundTrip(r, le64(0x1_0000_0000) + le64(0x20_0000) + le64(0x7f00_0000_0000) + le64(0x1000))
    }

    @Test("SingleMemoryRegion round-trips with 8 bytes of padding first")
    func singleRegion() throws {
        let r = MemoryRegionDescription(guestPhysicalAddress: 1, size: 2, userAddress: 3, mmapOffset: 4)
        try roundTrip(SingleMemoryRegion(r), le64(0) + le64(1) + le64(2) + le64(3) + le64(4))
    }

    @Test("InflightDescription round-trips in 24 bytes with its tail padding")
    func inflight() throws {
        let d = InflightDescription(mmapSize: 0x4000, mmapOffset: 0x10, queueCount: 2, queueSize: 256)
        try roundTrip(d, le64(0x4000) + le64(0x10) + le16(2) + le16(256) + le32(0))
    }

    @Test("LogDescription round-trips as two u64")
    func log() throws {
        let bytes = le64(0x8000) + le64(0x40)
        let d = try LogDescription(decoding: bytes, for: .setLogBase)
        #expect(d.mmapSize == 0x8000 && d.mmapOffset == 0x40)
        #expect(d.encoded() == bytes)
    }

    @Test("MemoryTable round-trips: count, padding, regions")
    func memoryTable() throws {
        let regions = (0..<3).map { i in
            MemoryRegionDescription(guestPhysicalAddress: UInt64(i) << 20, size: 1 << 20, userAddress: 0x7000_0000 + (UInt64(i) << 20), mmapOffset: UInt64(i) << 20)
        }
        let bytes = MemoryTable(regions: regions).encoded()
        #expect(bytes.count == 8 + 3 * 32)
        #expect(Array(bytes[0..<8]) == le32(3) + le32(0))
        #expect(try MemoryTable(decoding: bytes) == MemoryTable(regions: regions))
    }

    @Test("ConfigPayload round-trips: offset, size, flags, data")
    func config() throws {
        let c = ConfigPayload(offset: 4, flags: ConfigPayload.flagLiveMigration, data: [1, 2, 3])
        let bytes = c.encoded()
        #expect(bytes == le32(4) + le32(3) + le32(2) + [1, 2, 3])
        #expect(try ConfigPayload(decoding: bytes, for: .getConfig) == c)
        #expect(try ConfigPayload(decoding: le32(0) + le32(0) + le32(0), for: .getConfig).data == [])
    }

    @Test("a VringState of 7 bytes throws badPayloadSize")
    func strictFixedSize() {
        #expect(throws: VhostUserError.badPayloadSize(request: .setVringNum, expected: 8, actual: 7)) {
            try VringState(decoding: [UInt8](repeating: 0, count: 7), for: .setVringNum)
        }
        #expect(throws: VhostUserError.badPayloadSize(request: .setFeatures, expected: 8, actual: 9)) {
            try U64Payload(decoding: [UInt8](repeating: 0, count: 9), for: .setFeatures)
        }
        #expect(throws: VhostUserError.badPayloadSize(request: .setVringAddr, expected: 40, actual: 32)) {
            try VringAddress(decoding: [UInt8](repeating: 0, count: 32), for: .setVringAddr)
        }
        #expect(throws: VhostUserError.badPayloadSize(request: .getInflightFd, expected: 24, actual: 20)) {
            try InflightDescription(decoding: [UInt8](repeating: 0, count: 20), for: .getInflightFd)
        }
        #expect(throws: VhostUserError.badPayloadSize(request: .addMemReg, expected: 40, actual: 32)) {
            try SingleMemoryRegion(decoding: [UInt8](repeating: 0, count: 32), for: .addMemReg)
        }
    }

    @Test("a memory table must hold 1 to 8 regions and exactly as many bytes as its count says")
    func strictMemoryTable() {
        #expect(throws: VhostUserError.badPayloadSize(request: .setMemTable, expected: 8, actual: 4)) {
            try MemoryTable(decoding: [0, 0, 0, 0])
        }
        #expect(throws: VhostUserError.self) { try MemoryTable(decoding: le32(0) + le32(0)) }
        #expect(throws: VhostUserError.self) { try MemoryTable(decoding: le32(9) + le32(0) + [UInt8](repeating: 0, count: 9 * 32)) }
        #expect(throws: VhostUserError.badPayloadSize(request: .setMemTable, expected: 72, actual: 40)) {
            try MemoryTable(decoding: le32(2) + le32(0) + [UInt8](repeating: 0, count: 32))
        }
    }

    @Test("a config payload must be 12 bytes plus its size, at most 256")
    func strictConfig() {
        #expect(throws: VhostUserError.badPayloadSize(request: .getConfig, expected: 12, actual: 8)) {
            try ConfigPayload(decoding: le32(0) + le32(0), for: .getConfig)
        }
        #expect(throws: VhostUserError.badPayloadSize(request: .setConfig, expected: 16, actual: 14)) {
            try ConfigPayload(decoding: le32(0) + le32(4) + le32(0) + [1, 2], for: .setConfig)
        }
        #expect(throws: VhostUserError.self) {
            try ConfigPayload(decoding: le32(0) + le32(257) + le32(0) + [UInt8](repeating: 0, count: 257), for: .setConfig)
        }
    }

    @Test("FrontendRequest descriptions are the spec's names")
    func requestNames() {
        #expect(FrontendRequest.getFeatures.description == "VHOST_USER_GET_FEATURES")
        #expect(FrontendRequest.setVringAddr.description == "VHOST_USER_SET_VRING_ADDR")
        #expect(FrontendRequest.setBackendReqFd.description == "VHOST_USER_SET_BACKEND_REQ_FD")
        #expect(FrontendRequest.getMaxMemSlots.description == "VHOST_USER_GET_MAX_MEM_SLOTS")
        #expect(FrontendRequest.vringKick.description == "VHOST_USER_VRING_KICK")
        #expect(FrontendRequest.resetDevice.description == "VHOST_USER_RESET_DEVICE")
        #expect(FrontendRequest(rawValue: 99) == nil)
        #expect(FrontendRequest.allCases.map(\.rawValue) == Array(1...44))
    }

    @Test("GET-style requests are the ones whose reply carries a payload")
    func payloadReplies() {
        let gets: Set<FrontendRequest> = [.getFeatures, .getProtocolFeatures, .getVringBase, .getQueueNum, .getConfig,
                                          .getInflightFd, .getMaxMemSlots, .getStatus]
        for r in gets { #expect(r.hasPayloadReply, "\(r)") }
        for r in [FrontendRequest.setFeatures, .setOwner, .setMemTable, .setVringKick, .setVringEnable, .setConfig, .addMemReg] {
            #expect(!r.hasPayloadReply, "\(r)")
        }
    }

    @Test("framing errors drop the connection; refused requests do not")
    func errorSeverity() {
        #expect(VhostUserError.truncatedMessage(expected: 12, received: 5).dropsConnection)
        #expect(VhostUserError.payloadTooLarge(request: 1, size: 1 << 20).dropsConnection)
        #expect(VhostUserError.badVersion(flags: 2).dropsConnection)
        #expect(VhostUserError.tooManyFileDescriptors.dropsConnection)
        #expect(!VhostUserError.unknownRequest(99).dropsConnection)
        #expect(!VhostUserError.badPayloadSize(request: .setVringNum, expected: 8, actual: 7).dropsConnection)
        #expect(!VhostUserError.badFileDescriptorCount(request: .setVringKick, expected: 1, actual: 2).dropsConnection)
        #expect(!VhostUserError.invalidRequest(.setVringNum, "x").dropsConnection)
        #expect(VhostUserError.system(SystemError("sendmsg", errno: EPIPE)).dropsConnection)
    }

    @Test("a failed system call reads as the call and the system's reason, also as a connection error")
    func systemErrorText() {
        let error = SystemError("sendmsg", errno: EPIPE)
        #expect(error.description == "sendmsg: Broken pipe")
        #expect(VhostUserError.system(error).description == "sendmsg: Broken pipe")
        #expect(SystemError.describe(ENOENT) == "No such file or directory")
    }

    @Test("ring sizes are powers of two from 1 to 32768 and the device limit")
    func ringSizes() {
        #expect(SplitRingLayout.isValid(size: 1))
        #expect(SplitRingLayout.isValid(size: 32768))
        #expect(!SplitRingLayout.isValid(size: 0))
        #expect(!SplitRingLayout.isValid(size: 48))
        #expect(!SplitRingLayout.isValid(size: 65536))
        #expect(!SplitRingLayout.isValid(size: 512, limit: 256))
        let l = SplitRingLayout(size: 256)
        #expect(l.descriptorTableBytes == 4096 && l.availableRingBytes == 518 && l.usedRingBytes == 2054)
        #expect(l.usedEventOffset == 516 && l.availEventOffset == 2052)
    }

    // MARK: Message channel

    @Test("a message channel carries header, payload and descriptors intact")
    func channelRoundTrip() throws {
        let (a, b) = try socketPair()
        let sender = MessageChannel(socket: a), receiver = MessageChannel(socket: b)
        let event = try EventFD()
        let payload = VringFile(index: 2, hasFile: true).payload.encoded()
        try sender.send(MessageHeader(request: FrontendRequest.setVringKick.rawValue, flags: [.version1, .needReply], size: 8),
                        payload: payload, descriptors: [event.rawValue])
        let m = try #require(try receiver.receive())
        #expect(m.request == .setVringKick)
        #expect(m.needsReply)
        #expect(m.payload == payload)
        #expect(m.descriptors.count == 1)
        // The received descriptor is the same eventfd: a signal through it reaches ours.
        let received = EventFD(adopting: m.descriptors[0])
        received.signal()
        #expect(event.drain() == 1)
        try sender.reply(to: 11, payload: VringState(index: 0, num: 7).encoded())
        let reply = try #require(try receiver.receive())
        #expect(reply.header.flags.contains(.reply))
        #expect(reply.header.request == 11 && reply.payload == VringState(index: 0, num: 7).encoded())
    }

    @Test("a message channel returns nil at end of file between messages")
    func channelEOF() throws {
        let (a, b) = try socketPair()
        let receiver = MessageChannel(socket: b)
        _ = a
        shutdown(a.rawValue, Int32(SHUT_WR))
        #expect(try receiver.receive() == nil)
    }

    @Test("a message channel refuses a truncated header, a bad version and an oversized payload")
    func channelFraming() throws {
        do {
            let (a, b) = try socketPair()
            _ = [UInt8](repeating: 1, count: 5).withUnsafeBytes { send(a.rawValue, $0.baseAddress, 5, 0) }
            shutdown(a.rawValue, Int32(SHUT_WR))
            #expect(throws: VhostUserError.truncatedMessage(expected: 12, received: 5)) { try MessageChannel(socket: b).receive() }
        }
        do {
            let (a, b) = try socketPair()
            try MessageChannel(socket: a).send(MessageHeader(request: 1, flags: .init(rawValue: 2), size: 0))
            #expect(throws: VhostUserError.badVersion(flags: 2)) { try MessageChannel(socket: b).receive() }
        }
        do {
            let (a, b) = try socketPair()
            try MessageChannel(socket: a).send(MessageHeader(request: 1, flags: .version1, size: 1 << 20))
            #expect(throws: VhostUserError.payloadTooLarge(request: 1, size: 1 << 20)) { try MessageChannel(socket: b).receive() }
        }
        do {
            let (a, b) = try socketPair()
            try MessageChannel(socket: a).send(MessageHeader(request: 5, flags: .version1, size: 40), payload: [UInt8](repeating: 0, count: 10))
            shutdown(a.rawValue, Int32(SHUT_WR))
            #expect(throws: VhostUserError.truncatedMessage(expected: 52, received: 22)) { try MessageChannel(socket: b).receive() }
        }
    }

    @Test("a message with more than 8 descriptors is refused")
    func channelTooManyDescriptors() throws {
        let (a, b) = try socketPair()
        let events = try (0..<9).map { _ in try EventFD() }
        try MessageChannel(socket: a).send(MessageHeader(request: 5, flags: .version1, size: 0), descriptors: events.map(\.rawValue))
        #expect(throws: VhostUserError.tooManyFileDescriptors) { try MessageChannel(socket: b).receive() }
    }
}
}
