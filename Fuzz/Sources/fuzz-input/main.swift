// fuzz-input: vhost-user-input's host-facing and guest-facing parsers. Arbitrary control-socket text
// through the line protocol (a refused line must hold no event; the buffer never exceeds its bound),
// arbitrary config-space writes and reads (size at most 128, the union zero beyond it), then the
// accepted events, as an evdev device would deliver them, through the device's group handler on a
// ring of arbitrary chains as the eventq or the statusq. After each input every used element must
// name a head that was made available and report no more bytes than its chain can hold;
// descriptors and threads must not grow.
// Input: configuration byte (bit 0 the ring is the statusq, bits 1-2 the synthetic kind), text length
// (u16) and text, config operations (count, then offset, length, bytes each), layout byte, a `FuzzRing`.
import FuzzSupport
import InputDevice
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

let memory = FuzzGuestMemory()
nonisolated(unsafe) var watch = ResourceWatch(every: 256)
/// The evdev stand-in: the fuzzer writes `struct input_event`s into one end, the device reads the other.
let evdev: (device: Int32, host: Int32) = {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
        fatalError("socketpair: errno \(errno)")
    }
    return (fds[0], fds[1])
}()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(inputSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    drain(evdev.device)
    drain(evdev.host)
    let config = input.u8()
    let description = SyntheticKind.allCases[Int(config >> 1) & 3].description()

    // The line protocol.
    var pending = PendingEvents(capacity: 512, maxBatch: 64)
    var interpreter = ControlInterpreter(description: description)
    let text = String(decoding: input.bytes(Int(input.u16()) % 4096), as: UTF8.self)
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let before = pending.count
        let reply = interpreter.execute(line, into: &pending)
        precondition(reply == "ok" || reply.hasPrefix("ok ") || reply.hasPrefix("error "), "reply \(reply)")
        precondition(!reply.hasPrefix("error") || pending.count == before, "a refused line held events")
        precondition(pending.count <= pending.capacity)
    }

    // The config space.
    var space = InputConfigSpace(description)
    for _ in 0..<input.below(8) {
        let offset = Int(input.u8()) % (InputConfigSpace.size + 8)
        let bytes = input.bytes(Int(input.u8()) % 16)
        try? space.write(offset: offset, bytes: bytes)
        let whole = space.read(offset: 0, count: InputConfigSpace.size)
        precondition(whole[2] <= 128 && whole[(8 + Int(whole[2]))...].allSatisfy { $0 == 0 })
    }

    // The accepted events, as evdev delivers them, through the handler on a fuzzed ring.
    let kernelEvents = (0..<pending.count).map { pending.event(at: $0) }
    writeKernelEvents(kernelEvents, to: evdev.host)
    do {
        let device = InputDevice(description: description, source: .evdev(OwnedDescriptor(dup(evdev.device))),
                                 bufferEvents: 256, maxBatch: 32)
        let layout = memory.layouts[input.below(memory.layouts.count)]
        let ring = FuzzRing(&input, layout: layout)
        let oracle = RingOracle(ring)
        let index = config & 1 == 0 ? InputDevice.eventQueue : InputDevice.statusQueue
        let queue = ring.makeQueue(index: index, policy: device.malformedChainPolicy)
        runQueueGroup(device, queue, features: ring.features)
        oracle.expectValidUsedRing()
    }
    watch.check()
    return 0
}

func drain(_ fd: Int32) {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while read(fd, &buffer, buffer.count) > 0 {}
}

/// Writes `events` as `struct input_event`s (x86_64: 16 bytes of time, then type, code, value).
func writeKernelEvents(_ events: [InputEvent], to fd: Int32) {
    var bytes: [UInt8] = []
    for event in events {
        bytes += [UInt8](repeating: 0, count: 16)
        bytes += withUnsafeBytes(of: event.type.littleEndian, Array.init) + withUnsafeBytes(of: event.code.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: event.value.littleEndian, Array.init)
    }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
