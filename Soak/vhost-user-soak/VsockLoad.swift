import VhostUserKit
import VhostUserTesting
import VsockDevice

/// vhost-user-vsock: packets on the tx queue (1) that the device must parse whole and answer with
/// nothing: RST packets with random ports, types, flags, lengths and source CIDs (valid and not, with
/// and without payload), split over one to three readable buffers. No host program listens, and an
/// RST never gets an answer, so the receive queue gets no requests; every tx chain must come back with
/// length 0. The control plane: the config space holds the guest CID.
final class VsockLoad: LoadProfile {
    static let name = "vsock"
    static let guestCID: UInt64 = 3

    private var pending: Set<Int> = []
    private var nextTag = 0
    private(set) var bytesVerified = 0
    private let uds: String

    init(files: String) { uds = "\(files)/v.sock" }

    var executable: String { "vhost-user-vsock" }
    var arguments: [String] { ["--guest-cid", "\(Self.guestCID)", "--uds-path", uds] }
    var maxQueues: Int { 2 }
    var maxQueueSize: Int { 1024 }
    var slabBytes: Int { 4096 + VirtioVsock.headerSize }

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        guard queue == VirtioVsock.transmitQueue else { return nil }
        let payload = random.weighted([(0, 5), (Int.random(in: 1...4096, using: &random), 2)])
        var header = VsockHeader(srcCID: random.chance(80) ? Self.guestCID : UInt64(random.next() % 100),
                                 dstCID: random.chance(80) ? VirtioVsock.hostCID : UInt64(random.next() % 100),
                                 srcPort: UInt32(truncatingIfNeeded: random.next()), dstPort: UInt32(truncatingIfNeeded: random.next()),
                                 type: random.chance(70) ? .stream : .seqpacket, op: .rst,
                                 flags: UInt32(truncatingIfNeeded: random.next() % 4), length: UInt32(payload))
        if random.chance(10) { header.type = UInt16(random.next() % 5) }
        if random.chance(10) { header.length = UInt32(truncatingIfNeeded: random.next()) }
        let bytes = header.bytes
        bytes.withUnsafeBytes { slab.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        for i in 0..<payload { slab[VirtioVsock.headerSize + i] = UInt8(truncatingIfNeeded: i) }
        let length = VirtioVsock.headerSize + payload
        let cuts = [0] + (0..<Int.random(in: 0...2, using: &random)).map { _ in Int.random(in: 1..<length, using: &random) }.sorted() + [length]
        let buffers = zip(cuts, cuts.dropFirst()).filter { $0 < $1 }.map { SlabBuffer(offset: $0, length: $1 - $0, writable: false) }
        nextTag += 1
        pending.insert(nextTag)
        return LoadRequest(buffers: buffers, tag: nextTag)
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard pending.remove(tag) != nil else { return "completion of an unknown request \(tag)" }
        guard usedLength == 0 else { return "used length \(usedLength) for a tx packet (the device writes nothing back)" }
        bytesVerified += VirtioVsock.headerSize
        return nil
    }

    func abandon(_ tag: Int) { pending.remove(tag) }

    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String? {
        let config = try frontend.getConfig(offset: 0, count: 8).data
        guard config == [UInt8(Self.guestCID), 0, 0, 0, 0, 0, 0, 0] else { return "config space \(config): not guest CID \(Self.guestCID)" }
        return nil
    }
}
