// fuzz-i2c: the virtio-i2c request parser and FAIL_NEXT transactions over arbitrary request chains
// (address fields, flags, buffer shapes and lengths) on a simulated bus (a 4 KiB EEPROM on a memfd,
// a 256-byte one, an LM75 sensor at a 7-bit and one at a 10-bit address), through the device's own
// queue handler. After each input every used element must name a head that was made available and
// report no more bytes than its chain can hold; descriptors and threads must not grow.
// Input: configuration byte (bit 0: VIRTIO_I2C_F_ZERO_LENGTH_REQUEST negotiated), layout byte, then
// a `FuzzRing`.
import FuzzSupport
import I2CDevice
import VhostUserKit

let memory = FuzzGuestMemory()
let eepromFile = anonymousFile("fuzz-eeprom", size: 4096)
let smallFile = anonymousFile("fuzz-eeprom-small", size: 256)
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// The device, made once: its clients keep their state (EEPROM contents, pointers) across inputs, as
/// they do across a daemon's connections.
nonisolated(unsafe) let device: I2CDevice = {
    let clients: [any SimulatedClient] = [
        try! EEPROM(EEPROMConfiguration(address: I2CAddress(sevenBit: 0x50)!, size: 4096, pageSize: 32, file: "/proc/self/fd/\(eepromFile)")),
        try! EEPROM(EEPROMConfiguration(address: I2CAddress(sevenBit: 0x54)!, size: 256, file: "/proc/self/fd/\(smallFile)")),
        TemperatureSensor(SensorConfiguration(address: I2CAddress(sevenBit: 0x48)!)),
        TemperatureSensor(SensorConfiguration(address: I2CAddress(tenBit: 0x123)!)),
    ]
    return I2CDevice(bus: try! I2CBus(clients: clients, adapters: [], logger: quietLogger), logger: quietLogger)
}()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(i2cSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let config = input.u8()
    do {
        let features = config & 1 != 0 ? VirtioI2C.Feature.zeroLengthRequest : 0
        let handler = device.makeQueueHandler(queue: 0, features: features | VirtioFeature.kitFeatures)
        let layout = memory.layouts[input.below(memory.layouts.count)]
        let ring = FuzzRing(&input, layout: layout)
        let oracle = RingOracle(ring)
        let queue = ring.makeQueue(extraFeatures: features, policy: device.malformedChainPolicy)
        serveLikeAWorker(handler, queue)   // the stop fails what is held
        oracle.expectValidUsedRing()
    }
    watch.check()
    return 0
}
