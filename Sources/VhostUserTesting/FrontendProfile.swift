import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The message orders real front-ends use to bring a device up; each is a path a daemon must accept.
public enum FrontendProfile: String, Sendable, CaseIterable, CustomStringConvertible {
    /// QEMU: negotiation, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS and SET_BACKEND_REQ_FD before SET_OWNER;
    /// memory by ADD_MEM_REG; per ring NUM, BASE, ADDR, KICK, CALL; then every ring enabled.
    case qemu
    /// cloud-hypervisor: SET_OWNER first, NEED_REPLY on every message, SET_VRING_NUM for all queues
    /// first, SET_BACKEND_REQ_FD last, after the rings run.
    case cloudHypervisor
    /// crosvm: protocol features before SET_FEATURES, SET_MEM_TABLE, never NEED_REPLY.
    case crosvm
    /// libblkio: SET_FEATURES before the protocol-feature exchange, NEED_REPLY on everything including
    /// GETs, memory only by ADD_MEM_REG, data regions added after the rings are enabled.
    case libblkio

    public var description: String { rawValue }
}

/// What a profile brought up.
public struct FrontendSetup {
    public let features: UInt64
    public let protocolFeatures: ProtocolFeatures
    public let queues: [FakeQueue]
    /// The back-end channel's front-end end, when one was set up.
    public let backendSocket: OwnedDescriptor?
    /// The inflight region the back-end was given, when one was shared.
    public let inflight: SharedInflightRegion?
}

/// An inflight region (INFLIGHT_SHMFD) as the front-end keeps it across reconnects.
public struct SharedInflightRegion: Sendable {
    public let description: InflightDescription
    public let file: OwnedDescriptor
    public init(description: InflightDescription, file: OwnedDescriptor) {
        self.description = description
        self.file = file
    }
}

/// Whether and how a set-up shares the inflight region, right after SET_FEATURES as QEMU's
/// vhost-user-blk does (skipped unless INFLIGHT_SHMFD was negotiated).
public enum InflightSharing: Sendable {
    case none
    /// GET_INFLIGHT_FD for a new region sized for the queues (all of one size), then SET_INFLIGHT_FD.
    case new
    /// SET_INFLIGHT_FD with a region an earlier connection got: a reconnect.
    case reuse(SharedInflightRegion)
}

extension FakeFrontend {
    /// Brings a device up the way `profile` does: negotiates (accepting every feature offered, except
    /// those in `maskFeatures` and LOG_ALL, which only a migration turns on), shares `memory`, and starts `queueSizes.count` rings laid out in it.
    public func setUp(_ profile: FrontendProfile, memory: FakeGuestMemory, queueSizes: [Int],
                      maskFeatures: UInt64 = 0, withBackendChannel: Bool = true) throws -> FrontendSetup {
        let queues = try queueSizes.enumerated().map { try FakeQueue(index: $0.offset, size: $0.element, memory: memory) }
        return try setUp(profile, memory: memory, queues: queues, maskFeatures: maskFeatures, withBackendChannel: withBackendChannel)
    }

    /// Brings a device up on rings that already exist in `memory` (a reconnect resuming them): as above,
    /// with SET_VRING_BASE `bases[i]` for `queues[i]` (0 where none is given) and the inflight region
    /// shared as `inflight` says.
    public func setUp(_ profile: FrontendProfile, memory: FakeGuestMemory, queues: [FakeQueue], bases: [UInt16] = [],
                      inflight: InflightSharing = .none, maskFeatures: UInt64 = 0,
                      withBackendChannel: Bool = true) throws -> FrontendSetup {
        for q in queues { q.connection = self }
        let maskFeatures = maskFeatures | VirtioFeature.logAll
        var backend: (ours: OwnedDescriptor, theirs: OwnedDescriptor)?
        if withBackendChannel { backend = try socketPair() }

        func negotiateProtocol() throws {
            let offered = try getProtocolFeatures()
            let wanted: ProtocolFeatures = [.mq, .replyAck, .backendReq, .config, .configureMemSlots, .status, .resetDevice, .inflightShmfd,
                                            .logShmfd, .deviceState]
            try setProtocolFeatures(offered.intersection(wanted))
        }
        var sharedInflight: SharedInflightRegion?
        func shareInflight() throws {
            guard protocolFeatures.contains(.inflightShmfd), let first = queues.first else { return }
            switch inflight {
            case .none: return
            case .new:
                let (description, file) = try getInflightFd(queueCount: queues.count, queueSize: first.size)
                guard let file else { throw FakeFrontendError.unexpectedReply("GET_INFLIGHT_FD without a descriptor") }
                sharedInflight = SharedInflightRegion(description: description, file: file)
            case let .reuse(region):
                sharedInflight = region
            }
            try setInflightFd(sharedInflight!.description, file: sharedInflight!.file.rawValue)
        }
        func setFeaturesAndInflight(_ value: UInt64) throws {
            try setFeatures(value)
            try shareInflight()
        }
        func negotiateFeatures() throws {
            let offered = try getFeatures()
            try setFeaturesAndInflight(offered & ~maskFeatures)
        }
        // Like QEMU, ADD_MEM_REG only for regions not shared already (e.g. before a RESET_DEVICE).
        func addRegions(_ regions: some Sequence<MemoryRegionDescription>) throws {
            for r in regions where !sharedRegions.contains(r) { try addMemReg(r, file: memory.file.rawValue) }
        }
        func addAllRegions() throws { try addRegions(memory.regions) }
        func configure(_ q: FakeQueue, order: [FrontendRequest]) throws {
            let position = queues.firstIndex { $0 === q } ?? 0
            q.eventIdx = features & VirtioFeature.ringEventIdx != 0
            for request in order {
                switch request {
                case .setVringNum: try setVringNum(q.index, q.size)
                case .setVringBase: try setVringBase(q.index, position < bases.count ? bases[position] : 0)
                case .setVringAddr: try setVringAddr(q.address)
                case .setVringKick: try setVringKick(q.index, q.kick)
                case .setVringCall: try setVringCall(q.index, q.call)
                case .setVringEnable: try setVringEnable(q.index, true)
                default: preconditionFailure("not a ring request: \(request)")
                }
            }
        }

        switch profile {
        case .qemu:
            let offered = try getFeatures()
            try negotiateProtocol()
            _ = try getQueueNum()
            _ = try getMaxMemSlots()
            if let backend { try setBackendReqFd(backend.theirs.rawValue) }
            try setOwner()
            try setFeaturesAndInflight(offered & ~maskFeatures)
            try addAllRegions()
            for q in queues { try configure(q, order: [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall]) }
            for q in queues { try setVringEnable(q.index, true) }
            try setStatus(0x0f)

        case .cloudHypervisor:
            try setOwner()
            let offered = try getFeatures()
            try negotiateProtocol()
            needReplyOnEverything = true
            try setFeaturesAndInflight(offered & ~maskFeatures)
            _ = try getQueueNum()
            try setMemTable(memory)
            for q in queues { try setVringNum(q.index, q.size) }
            for q in queues { try configure(q, order: [.setVringAddr, .setVringBase, .setVringCall, .setVringKick, .setVringEnable]) }
            if let backend { try setBackendReqFd(backend.theirs.rawValue) }

        case .crosvm:
            let offered = try getFeatures()
            try negotiateProtocol()
            try setOwner()
            try setFeaturesAndInflight(offered & ~maskFeatures)
            _ = try getQueueNum()
            if let backend { try setBackendReqFd(backend.theirs.rawValue) }
            try setMemTable(memory)
            for q in queues { try configure(q, order: [.setVringNum, .setVringAddr, .setVringBase, .setVringCall, .setVringKick, .setVringEnable]) }

        case .libblkio:
            try setOwner()
            try negotiateFeatures()
            try negotiateProtocol()
            needReplyOnEverything = true
            _ = try getQueueNum()
            // Rings first: region 0 holds them; data regions follow once the rings are enabled.
            try addRegions(memory.regions.prefix(1))
            for q in queues { try configure(q, order: [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall, .setVringEnable]) }
            try addRegions(memory.regions.dropFirst())
        }
        return FrontendSetup(features: features, protocolFeatures: protocolFeatures, queues: queues, backendSocket: backend?.ours,
                             inflight: sharedInflight)
    }
}

/// A connected pair of unix stream sockets.
public func socketPair() throws -> (OwnedDescriptor, OwnedDescriptor) {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw FakeFrontendError.system("socketpair", errno)
    }
    return (OwnedDescriptor(fds[0]), OwnedDescriptor(fds[1]))
}
