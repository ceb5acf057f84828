// fuzz-blk: the virtio-blk request parser over arbitrary request chains (types, sectors, lengths,
// DISCARD / WRITE_ZEROES ranges) on a null disk or a 1 MiB memfd image, through the device's own
// queue handler. After each input every used element must name a head that was made available and
// report no more bytes than its chain can hold; descriptors and threads must not grow.
// Input: configuration byte (bit 0 image file, 1 read-only, 2 4096-byte blocks, 3 thread-pool engine
// (image only; else inline), 4 FLUSH negotiated, 5 write cache off), layout byte, then a `FuzzRing`.
import BlockDevice
import FuzzSupport
import VhostUserKit

let memory = FuzzGuestMemory()
let diskSize = 1 << 20
let disk = anonymousFile("fuzz-disk", size: diskSize)
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// One device per configuration, made once. Each input gets a fresh queue handler, as each run of a
/// queue does: `stop` ends a handler's life (its engine releases its threads and descriptors).
nonisolated(unsafe) let devices: [(device: BlockDevice, features: UInt64)] = (0..<32).map { config in
    let backend = try! BlockBackend(target: config & 1 != 0 ? .file("/proc/self/fd/\(disk)") : .null(size: UInt64(diskSize)),
                                    readOnly: config & 2 != 0, logicalBlockSize: config & 4 != 0 ? 4096 : 512)
    var options = BlockDevice.Options()
    options.engine = config & 9 == 9 ? .threads : .inline
    let device = try! BlockDevice(backend: backend, options: options, logger: quietLogger)
    return (device, config & 16 != 0 ? VirtioBlock.Feature.flush : 0)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(blockSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    zeroFile(disk, size: diskSize)
    let config = Int(input.u8())
    // The handler lives in this scope only: it and its engine are gone before the resource check.
    do {
        let (device, features) = devices[config & 31]
        let handler = device.makeQueueHandler(queue: 0, features: features)
        try? device.writeConfig(offset: VirtioBlock.ConfigOffset.writeback, bytes: [config & 32 != 0 ? 0 : 1])
        let layout = memory.layouts[input.below(memory.layouts.count)]
        let ring = FuzzRing(&input, layout: layout)
        let oracle = RingOracle(ring)
        let queue = ring.makeQueue(extraFeatures: config & 16 != 0 ? VirtioBlock.Feature.flush : 0, policy: device.malformedChainPolicy)
        serveLikeAWorker(handler, queue)   // the stop waits for I/O
        oracle.expectValidUsedRing()
    }
    watch.check()
    return 0
}
