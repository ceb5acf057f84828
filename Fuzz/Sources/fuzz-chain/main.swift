// fuzz-chain: the chain walker over arbitrary descriptor tables, indirect tables and available rings
// in guest memory of one or two regions. Every chain the kit hands out must be exactly the guest bytes
// its descriptors name (checked against the harness's own walk), every byte of it is read or written
// (AddressSanitizer and the poisoned non-guest part of each mapping catch a stray pointer), and the
// used ring must name only heads that were made available. Input: layout byte, then a `FuzzRing`, then
// per chain a byte for the length to report and a byte saying whether to publish right away.
import FuzzSupport
import VhostUserKit

let memory = FuzzGuestMemory()
nonisolated(unsafe) let inflight = try! InflightRegion.create(queueCount: 1, queueSize: 256)
nonisolated(unsafe) var sink: UInt8 = 0

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(chainSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let layout = memory.layouts[input.below(memory.layouts.count)]
    let ring = FuzzRing(&input, layout: layout)
    // Feature bit 2: stop the queue on a malformed chain instead of returning it; bit 3: resume from an
    // inflight region whose header and entries come from the input.
    let policy: MalformedChainPolicy = ring.featureBits & 4 != 0 ? .stopQueue : .returnEmpty
    let tracking = ring.featureBits & 8 != 0
    if tracking { fillInflight(&input, size: ring.size) }
    let oracle = RingOracle(ring)
    let queue = ring.makeQueue(policy: policy, inflightRegion: tracking ? inflight.base : nil)
    queue.disableNotifications()
    var taken = 0
    while let chain = queue.nextChain() {
        taken += 1
        // At most every available head once, plus every head again from the inflight region.
        if taken > 2 * ring.size { fatalError("nextChain handed out \(taken) chains from a ring of \(ring.size)") }
        oracle.expectMatches(chain)
        touch(chain)
        let choice = input.u8()
        queue.complete(chain, written: choice == 0 ? chain.writableLength : Int(choice) - 1)
        if input.bool() { queue.publish() }
    }
    queue.publish()
    _ = queue.enableNotifications()
    // Resubmitted heads come from the inflight region, not the available window.
    if !tracking { oracle.expectValidUsedRing() }
    return 0
}

/// Reads every readable byte and writes every writable one, through the kit's cursors and directly.
func touch(_ chain: DescriptorChain) {
    var reader = chain.reader()
    withUnsafeTemporaryAllocation(byteCount: 512, alignment: 8) { buffer in
        while reader.read(into: buffer) > 0 { sink &+= buffer[0] }
    }
    for segment in chain.readable { for byte in segment { sink &+= byte } }
    var writer = chain.writer()
    let filled = writer.fill(upTo: chain.writableLength) { piece in
        piece.initializeMemory(as: UInt8.self, repeating: 0xa5)
        return piece.count
    }
    guard filled == chain.writableLength, writer.written == filled, reader.consumed == chain.readableLength else {
        fatalError("chain \(chain.head): cursors covered \(reader.consumed)/\(filled) of \(chain.readableLength)/\(chain.writableLength) bytes")
    }
}

/// The inflight region's header (16 bytes) and up to 8 descriptor entries from the input.
func fillInflight(_ input: inout FuzzInput, size: Int) {
    let bytes = 16 + 16 * size
    inflight.base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    let header = input.bytes(16)
    inflight.base.copyMemory(from: header, byteCount: header.count)
    for _ in 0..<input.below(9) {
        let entry = inflight.base + 16 + 16 * input.below(size)
        let state = input.bytes(16)
        entry.copyMemory(from: state, byteCount: state.count)
    }
}
