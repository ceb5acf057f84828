import FuzzSupport
import VhostUserKit
import VsockDevice

/// The seed corpus: packets as Linux sends them (connect, data, credit, shutdown, reset; stream and
/// seqpacket), broken ones (short, wrong CID, type, op, length), receive and event buffers.
func vsockSeeds() -> [(String, [UInt8])] {
    let write = SplitRingLayout.flagWrite
    func packet(_ op: VirtioVsock.Op, _ port: UInt32, to peer: UInt32 = 5000, type: VirtioVsock.SocketType = .stream,
                flags: UInt32 = 0, payload: [UInt8] = [], cid: UInt64 = 3, dst: UInt64 = 2) -> [UInt8] {
        VsockHeader(srcCID: cid, dstCID: dst, srcPort: port, dstPort: peer, type: type, op: op, flags: flags,
                    length: UInt32(payload.count), bufAlloc: 65536, fwdCnt: 0).bytes + payload
    }
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, queue: UInt8, _ buffers: [([UInt8]?, Int)]) {
        var seed = RingSeed()
        seed.sizeLog2 = 4
        for (n, (bytes, length)) in buffers.enumerated() {
            let offset = 0x9000 + n * 0x200
            if let bytes { seed.patch(region: 0, offset: offset, bytes) }
            seed.descriptors.append(RingSeed.buffer(region: 0, offset: offset, length: length, flags: bytes == nil ? write : 0))
            seed.heads.append(UInt16(n))
        }
        seeds.append((name, [queue] + seed.encoded))
    }
    func tx(_ packets: [[UInt8]]) -> [([UInt8]?, Int)] { packets.map { ($0, $0.count) } }
    add("stream-session", queue: 1, tx([packet(.request, 100), packet(.rw, 100, payload: Array("hello".utf8)),
                                        packet(.creditRequest, 100), packet(.creditUpdate, 100),
                                        packet(.shutdown, 100, flags: 3), packet(.rst, 100)]))
    add("seqpacket-session", queue: 1, tx([packet(.request, 101, to: 5001, type: .seqpacket),
                                           packet(.rw, 101, to: 5001, type: .seqpacket, payload: [1, 2, 3]),
                                           packet(.rw, 101, to: 5001, type: .seqpacket, flags: 3, payload: [4])]))
    add("refused", queue: 1, tx([packet(.request, 102, to: 9), packet(.rw, 103, payload: [1]), packet(.request, 104, dst: 7)]))
    var badType = packet(.request, 107)
    badType[28] = 9  // the type field
    var badOp = packet(.request, 108)
    badOp[30] = 42  // the op field
    add("broken", queue: 1, tx([[1, 2, 3], packet(.request, 105, cid: 99), Array(packet(.rw, 106, payload: [1, 2]).dropLast()),
                                badType, badOp]))
    add("receive-buffers", queue: 0, [(nil, 4096), (nil, 44), (nil, 10), (nil, 0)])
    add("event-buffers", queue: 2, [(nil, 4), (nil, 1), (nil, 8)])
    return seeds
}
