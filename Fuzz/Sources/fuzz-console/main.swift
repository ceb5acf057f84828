// fuzz-console: the virtio console's queue group over arbitrary chains on any of its queues: the
// control messages the driver sends (events, port ids, values, lengths), the control buffers it
// offers, and data on the console port and a named port; plus config reads and writes at any offset.
// After each input every used element must name a head that was made available and report no more
// bytes than its chain can hold; descriptors and threads must not grow.
// Input: queue byte (bits 0-2: control transmit, control receive, port 1 transmit, port 1 receive,
// port 0 transmit, port 0 receive; bit 3: MULTIPORT not negotiated), config offset, count and a
// written byte, then a `FuzzRing`.
import ConsoleDevice
import FuzzSupport
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

let memory = FuzzGuestMemory()
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// Made once: port 0 (the console) and port 2 write to /dev/null, port 1 listens on a unix socket no
/// client attaches to (its output stays buffered up to the bound, then the device stops taking it).
nonisolated(unsafe) let device: ConsoleDevice = {
    let socket = "/tmp/fuzz-console-\(getpid()).sock"
    var options = ConsoleDevice.Options()
    options.bufferBytes = 16 << 10
    options.maxPorts = 4
    return try! ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                      .init(name: "data", endpoint: HostEndpoint.open(.unix(path: socket))),
                                      .init(name: "log", endpoint: HostEndpoint.open(.file(path: "/dev/null")))],
                              options: options, logger: quietLogger)
}()

let queues = [VirtioConsole.controlTransmitQueue, VirtioConsole.controlReceiveQueue, VirtioConsole.transmitQueue(port: 1),
              VirtioConsole.receiveQueue(port: 1), VirtioConsole.transmitQueue(port: 0), VirtioConsole.receiveQueue(port: 0)]

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(consoleSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let selector = input.u8()
    let index = queues[Int(selector & 7) % queues.count]
    let features = VirtioConsole.featureSize | VirtioConsole.featureEmergencyWrite
        | (selector & 8 != 0 ? 0 : VirtioConsole.featureMultiport)
    let offset = Int(input.u8()) % 16, length = Int(input.u8()) % 16, written = input.u8()
    let config = device.readConfig(offset: offset, count: length)
    precondition(config.count == length, "a config read of \(length) bytes returned \(config.count)")
    try? device.writeConfig(offset: offset, bytes: [UInt8](repeating: written, count: length))
    device.reset()  // each input starts the handshake afresh
    do {
        let layout = memory.layouts[input.below(memory.layouts.count)]
        let ring = FuzzRing(&input, layout: layout)
        let oracle = RingOracle(ring)
        let queue = ring.makeQueue(index: index, extraFeatures: features, policy: device.malformedChainPolicy)
        runQueueGroup(device, queue, features: features)
        oracle.expectValidUsedRing()
    }
    watch.check()
    return 0
}
