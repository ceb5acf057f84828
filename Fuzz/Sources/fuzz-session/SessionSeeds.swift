import FuzzSupport
import VhostUserKit
import VhostUserTesting

/// Writes a `SessionScript` input step by step.
struct SessionSeed {
    var bytes: [UInt8]
    /// NEED_REPLY on every request from now on (cloud-hypervisor and libblkio after negotiation).
    var needReply = false

    init(device: UInt8) { bytes = [device] }

    mutating func send(_ request: FrontendRequest, _ fields: [UInt8] = [], flags: SessionScript.Flags = []) {
        bytes += [UInt8(request.rawValue), flags.union(needReply ? .needReply : []).rawValue] + fields
    }

    /// Guest RAM bytes at `offset` (a multiple of 8), written before the session runs.
    mutating func memory(at offset: Int, _ data: [UInt8]) {
        bytes += [0, 0, UInt8(offset / 8 & 0xff), UInt8((offset / 8) >> 8 & 0xff), UInt8(data.count)] + data
    }

    mutating func raw(_ data: [UInt8]) { bytes += [64, UInt8(data.count)] + data }
}

/// Seeds: each device brought up in the QEMU, cloud-hypervisor, crosvm and libblkio orders
/// (`FrontendProfile`), with a request waiting in the first ring, then a few broken sequences.
func sessionSeeds() -> [(String, [UInt8])] {
    /// Ring q: descriptor table at 0x1000 + q × 0x1000, available ring 0x400 after it, used ring 0x800 after it.
    func ring(_ q: Int) -> (desc: Int, avail: Int, used: Int) { (0x1000 + q * 0x1000, 0x1400 + q * 0x1000, 0x1800 + q * 0x1000) }
    func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
    let allFeatures = [UInt8](repeating: 0, count: 8)
    let wanted: ProtocolFeatures = [.mq, .replyAck, .backendReq, .config, .configureMemSlots, .status, .resetDevice, .inflightShmfd]
    var w = ByteWriter()
    w.u64(~wanted.rawValue)
    let protocolMask = w.bytes
    let wholeRAM: [UInt8] = [0, 127, 0]

    /// One request in ring 0's first descriptors: a writable buffer (pattern device) or a blk read.
    func request(_ seed: inout SessionSeed, blk: Bool) {
        let g = SessionScript.guestBase
        var d = ByteWriter()
        if blk {
            var header = ByteWriter()
            header.u32(0); header.u32(0); header.u64(1)
            seed.memory(at: 0x9000, header.bytes)
            for (address, length, flags, next) in [(g + 0x9000, 16, 1, 1), (g + 0xa000, 512, 3, 2), (g + 0xb000, 1, 2, 0)] as [(UInt64, UInt32, UInt16, UInt16)] {
                d.u64(address); d.u32(length); d.u16(flags); d.u16(next)
            }
        } else {
            d.u64(g + 0x10000); d.u32(256); d.u16(2); d.u16(0)
        }
        seed.memory(at: ring(0).desc, d.bytes)
        seed.memory(at: ring(0).avail, [0, 0, 1, 0, 0, 0])
    }
    func configure(_ seed: inout SessionSeed, _ q: Int, _ order: [FrontendRequest]) {
        for r in order {
            switch r {
            case .setVringNum: seed.send(r, [UInt8(q), 4])
            case .setVringBase: seed.send(r, [UInt8(q), 0, 0])
            case .setVringAddr: seed.send(r, [UInt8(q)] + u16(ring(q).desc / 16) + u16(ring(q).used / 16) + u16(ring(q).avail / 16))
            case .setVringKick, .setVringCall: seed.send(r, [UInt8(q)])
            case .setVringEnable: seed.send(r, [UInt8(q), 1])
            default: fatalError("not a ring request")
            }
        }
    }

    var seeds: [(String, [UInt8])] = []
    let devices: [(String, UInt8, Int)] = [("pattern", 0, 1), ("pattern2", 1, 2), ("pattern2-grouped", 1 | 8, 2), ("blk-null", 2, 1),
                                           ("blk-file", 3 | 4, 2), ("blk-file-one-worker", 3 | 4 | 8, 2)]
    for (name, choice, queues) in devices {
        let blk = choice & 2 != 0
        for profile in FrontendProfile.allCases {
            var s = SessionSeed(device: choice)
            request(&s, blk: blk)
            switch profile {
            case .qemu:
                s.send(.getFeatures); s.send(.getProtocolFeatures); s.send(.setProtocolFeatures, protocolMask)
                s.send(.getQueueNum); s.send(.getMaxMemSlots); s.send(.setBackendReqFd); s.send(.setOwner)
                s.send(.setFeatures, allFeatures)
                s.send(.addMemReg, wholeRAM)
                for q in 0..<queues { configure(&s, q, [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall]) }
                for q in 0..<queues { s.send(.setVringEnable, [UInt8(q), 1]) }
                s.send(.setStatus, [0x0f])
                s.send(.getVringBase, [0])
            case .cloudHypervisor:
                s.send(.setOwner); s.send(.getFeatures); s.send(.getProtocolFeatures); s.send(.setProtocolFeatures, protocolMask)
                s.needReply = true
                s.send(.setFeatures, allFeatures); s.send(.getQueueNum)
                s.send(.setMemTable, [1] + wholeRAM)
                for q in 0..<queues { s.send(.setVringNum, [UInt8(q), 4]) }
                for q in 0..<queues { configure(&s, q, [.setVringAddr, .setVringBase, .setVringCall, .setVringKick, .setVringEnable]) }
                s.send(.setBackendReqFd)
            case .crosvm:
                s.send(.getFeatures); s.send(.getProtocolFeatures); s.send(.setProtocolFeatures, protocolMask)
                s.send(.setOwner); s.send(.setFeatures, allFeatures); s.send(.getQueueNum); s.send(.setBackendReqFd)
                s.send(.setMemTable, [1] + wholeRAM)
                for q in 0..<queues { configure(&s, q, [.setVringNum, .setVringAddr, .setVringBase, .setVringCall, .setVringKick, .setVringEnable]) }
            case .libblkio:
                s.send(.setOwner); s.send(.getFeatures); s.send(.setFeatures, allFeatures)
                s.send(.getProtocolFeatures); s.send(.setProtocolFeatures, protocolMask)
                s.needReply = true
                s.send(.getQueueNum)
                // Rings first (the first 64 KiB), the rest of RAM once they run.
                s.send(.addMemReg, [0, 15, 0])
                for q in 0..<queues { configure(&s, q, [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall, .setVringEnable]) }
                s.send(.addMemReg, [1, 111, 16])
            }
            seeds.append(("\(profile)-\(name)", s.bytes))
        }
        // Config space, inflight region, a reset and a second bring-up, the front-end leaving mid-way.
        var s = SessionSeed(device: choice)
        request(&s, blk: blk)
        s.send(.getFeatures); s.send(.getProtocolFeatures); s.send(.setProtocolFeatures, protocolMask)
        s.needReply = true
        s.send(.setFeatures, allFeatures)
        s.send(.getConfig, [0, 16]); s.send(.setConfig, [32, 1, 0])
        s.send(.getInflightFd, [UInt8(queues), 4])
        s.send(.setInflightFd, [0, 0, UInt8(queues), 4])
        s.send(.setMemTable, [1] + wholeRAM)
        configure(&s, 0, [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall, .setVringEnable])
        s.send(.vringKick, [0])
        s.send(.resetDevice)
        s.send(.setFeatures, allFeatures)
        configure(&s, 0, [.setVringNum, .setVringBase, .setVringAddr, .setVringKick, .setVringCall, .setVringEnable])
        s.send(.remMemReg, wholeRAM)
        s.send(.getStatus)
        seeds.append(("config-inflight-reset-\(name)", s.bytes))
    }
    // Broken framing: garbage, a bad version, descriptors on a request that takes none, unknown requests.
    var s = SessionSeed(device: 0)
    s.send(.getFeatures, flags: .extraDescriptor); s.bytes.append(0)
    s.send(FrontendRequest(rawValue: 44)!, [], flags: .rawPayload); s.bytes.append(0)
    s.bytes += [50, 0]
    s.send(.setLogBase, [16] + [UInt8](repeating: 1, count: 16), flags: .rawPayload)
    s.send(.getFeatures, flags: .badVersion)
    seeds.append(("broken-requests", s.bytes))
    var r = SessionSeed(device: 2)
    r.raw([1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0, 0])
    seeds.append(("raw-oversized", r.bytes))
    return seeds
}
