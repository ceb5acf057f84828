// fuzz-gpio: the virtio-gpio request and eventq parsers over arbitrary chains (types, lines, values,
// lengths, splits across descriptors), on a simulated chip with loopback pairs and a busy line,
// through the device's own group handler in two runs of its queue group: first the requestq (which
// may enable triggers, drive outputs and so latch edges or hold levels), then the eventq (whose
// buffers may fire, be held or come back INVALID; held ones come back when the group stops). After
// each run every used element must name a head that was made available and report no more bytes
// than its chain can hold; descriptors and threads must not grow.
// Input: configuration byte (bit 0 VIRTIO_GPIO_F_IRQ negotiated), then two `FuzzRing`s (requestq, eventq).
import FuzzSupport
import GPIODevice
import VhostUserKit

let memory = FuzzGuestMemory()
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// Lines 0-1 and 2-3 wired together, line 7 busy, names for four lines.
let layout = try! SimulatedChipLayout(lineCount: 8, names: ["led", "button", "out2", "in3"], loopbacks: [(0, 1), (2, 3)], busy: [7])

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(gpioSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let config = input.u8()
    let features: UInt64 = config & 1 != 0 ? VirtioGPIO.featureIRQ : 0
    do {
        let device = GPIODevice(chip: try! SimulatedChip(layout: layout))
        for index in [VirtioGPIO.requestQueue, VirtioGPIO.eventQueue] {
            let ring = FuzzRing(&input, layout: memory.layouts[input.below(memory.layouts.count)])
            let oracle = RingOracle(ring)
            runQueueGroup(device, ring.makeQueue(index: index, extraFeatures: features, policy: device.malformedChainPolicy), features: features)
            oracle.expectValidUsedRing()
        }
    }
    watch.check()
    return 0
}
