// fuzz-snd: the virtio-snd parsers over arbitrary chains: controlq requests (every code, id, size and
// split), then eventq buffers, then txq and rxq transfers (stream ids, sizes, status room), through
// the device's own group handler in one run of its queue group per queue, on streams the controlq run
// may have configured, prepared and started. After each run every used element must name a head that
// was made available and report no more bytes than its chain can hold (held transfers come back when
// the group stops); descriptors and threads must not grow.
// Input: four `FuzzRing`s (controlq, eventq, txq, rxq).
import FuzzSupport
import SoundDevice
import VhostUserKit

let memory = FuzzGuestMemory()
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// Playback stereo S16/S32 at 48 kHz with small periods allowed; capture mono U8/S16 at 8 and 48 kHz.
let streams = [
    try! StreamSpec.parse("channels=1-2:formats=s16,s32:rates=48000:buffer=16-65536:period=4-16384", direction: .output),
    try! StreamSpec.parse("channels=1:formats=u8,s16:rates=8000,48000:buffer=16-65536:period=1-16384", direction: .input),
]

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(soundSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let device = SoundDevice(streams: streams, backend: NullBackend())
    for index in [VirtioSound.controlQueue, VirtioSound.eventQueue, VirtioSound.txQueue, VirtioSound.rxQueue] {
        let ring = FuzzRing(&input, layout: memory.layouts[input.below(memory.layouts.count)])
        let oracle = RingOracle(ring)
        runQueueGroup(device, ring.makeQueue(index: index, extraFeatures: device.deviceFeatures, policy: device.malformedChainPolicy),
                      features: device.deviceFeatures)
        oracle.expectValidUsedRing()
    }
    watch.check()
    return 0
}
