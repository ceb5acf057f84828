// fuzz-vsock: the vsock device's queue group over arbitrary chains on its rx, tx or event queue: the
// packets a guest sends (headers with any CID, port, type, op, flags, length and credit; payloads), the
// receive and event buffers it offers. A host listener answers stream and seqpacket connections to
// ports 5000 and 5001, so packets reach established connections too. After each input every used
// element must name a head that was made available and report no more bytes than its chain can hold;
// descriptors and threads must not grow (each input starts from a reset device: its sockets closed).
// Input: queue byte (0 rx, 1 tx, 2 event; higher values wrap), then a `FuzzRing`.
import FuzzSupport
import VhostUserKit
import VsockDevice
#if canImport(Glibc)
import Glibc
#endif

let memory = FuzzGuestMemory()
nonisolated(unsafe) var watch = ResourceWatch(every: 256)

/// The host side: PATH_5000 (stream) and PATH_5001 (seqpacket) listen; a helper accepts nothing, so the
/// backlog fills and later connects are refused, both paths taken.
nonisolated(unsafe) let listeners: [UnixListener] = {
    let path = "/tmp/fuzz-vsock-\(getpid())"
    return [try! UnixListener(path: "\(path)_5000", backlog: 64),
            try! UnixListener(path: "\(path)_5001", type: Int32(SOCK_SEQPACKET.rawValue), backlog: 64)]
}()

nonisolated(unsafe) let device: VsockDevice = {
    _ = listeners
    var options = VsockDevice.Options()
    options.bufferBytes = 16 << 10
    options.maxConnections = 64
    return try! VsockDevice(guestCID: 3, host: HostSockets(path: "/tmp/fuzz-vsock-\(getpid())"), options: options, logger: quietLogger)
}()

/// Accepts and closes what waits on the host listeners, so the backlogs do not stay full.
func drainListeners() {
    for listener in listeners {
        _ = fcntl(listener.socket.rawValue, F_SETFL, fcntl(listener.socket.rawValue, F_GETFL) | O_NONBLOCK)
        while true {
            let fd = accept(listener.socket.rawValue, nil, nil)
            if fd < 0 { break }
            close(fd)
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzTarget.writeSeedsIfAsked(vsockSeeds)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    memory.reset()
    let index = Int(input.u8()) % 3
    device.reset()  // each input starts with no connection
    drainListeners()
    let config = device.readConfig(offset: 0, count: 8)
    precondition(config == [3, 0, 0, 0, 0, 0, 0, 0], "the config space holds the guest CID")
    let layout = memory.layouts[input.below(memory.layouts.count)]
    let ring = FuzzRing(&input, layout: layout)
    let oracle = RingOracle(ring)
    let queue = ring.makeQueue(index: index, extraFeatures: device.deviceFeatures, policy: device.malformedChainPolicy)
    runQueueGroup(device, queue, features: device.deviceFeatures)
    oracle.expectValidUsedRing()
    watch.check()
    return 0
}
