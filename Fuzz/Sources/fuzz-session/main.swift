// fuzz-session: the message decoder and the session state machine. The input becomes a sequence of
// front-end messages (`SessionScript`) sent over a socket pair to a `Session` serving a pattern device
// or vhost-user-blk (null disk or a memfd image, inline engine); rings that start run on their queue
// workers over guest RAM the input wrote. Each input ends with the front-end closing; the session must
// return, every reply must be a well-formed reply, and descriptors and threads must not grow.
// Input: device byte (bits 0-1: pattern device with 1 queue, pattern device with 2 queues, config
// and inflight, blk on a null disk, blk on a memfd image; bit 2: blk with 2 queues; bit 3: the two
// queues share one worker, as a queue group), then the script.
import BlockDevice
import FuzzSupport
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

let ramSize = 512 << 10, inflightSize = 64 << 10, diskSize = 1 << 20
let ram = anonymousFile("fuzz-session-ram", size: ramSize), inflight = anonymousFile("fuzz-session-inflight", size: inflightSize)
nonisolated(unsafe) let files = SessionScript.Files(ram: ram, ramSize: ramSize, ramMap: mapShared(ram, ramSize),
                                inflight: inflight, inflightSize: inflightSize, inflightMap: mapShared(inflight, inflightSize))
let disk = anonymousFile("fuzz-session-disk", size: diskSize)
nonisolated(unsafe) var watch = ResourceWatch(every: 16)


@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    signal(SIGPIPE, SIG_IGN)
    FuzzTarget.writeSeedsIfAsked(sessionSeeds)
    // Globals are made on first use: make the files now, so that the descriptor count taken after the
    // first input already holds them.
    _ = (files.ram, disk)
    return 0
}

func makeDevice(_ choice: UInt8) -> any VhostUserDevice {
    switch choice & 3 {
    case 0: return PatternDevice(queues: 1, withConfigAndInflight: false)
    case 1: return PatternDevice(queues: 2, withConfigAndInflight: true, grouped: choice & 8 != 0)
    default:
        var options = BlockDevice.Options()
        options.engine = .inline
        options.queueCount = choice & 4 != 0 ? 2 : 1
        if choice & 8 != 0 { options.workers = 1 }
        let target: BlockTarget = choice & 3 == 3 ? .file("/proc/self/fd/\(disk)") : .null(size: UInt64(diskSize))
        return try! BlockDevice(backend: BlockBackend(target: target), options: options, logger: quietLogger)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var input = FuzzInput(FuzzTarget.input(start, count))
    serve(&input)
    // Counted once serve's locals (the sockets among them) are gone.
    watch.check()
    return 0
}

/// Sends the input's script, runs a session over it to the end, and reads every reply.
func serve(_ input: inout FuzzInput) {
    // Punched, not memset: the session maps its regions afresh for every input and faults in only
    // the pages its rings touch.
    zeroFile(files.ram, size: ramSize)
    zeroFile(files.inflight, size: inflightSize)
    let device = makeDevice(input.u8())
    let (ours, theirs) = try! socketPair()
    _ = fcntl(ours.rawValue, F_SETFL, fcntl(ours.rawValue, F_GETFL) | O_NONBLOCK)
    let frontend = MessageChannel(socket: ours)
    do {
        var script = SessionScript(files: files, device: device)
        script.send(&input, on: frontend)
        shutdown(ours.rawValue, Int32(SHUT_WR))
        // The session runs on this thread: everything it will read is already in the socket.
        let session = Session(device: device, socket: theirs, logger: quietLogger)
        try? session.run()
    }
    // The session is gone and its socket closed: read every reply to the end.
    while true {
        let reply: Message?
        do { reply = try frontend.receive() } catch { break }
        guard let reply else { break }
        guard reply.header.flags.contains(.reply), reply.header.flags.version == 1, !reply.header.flags.contains(.needReply) else {
            fatalError("malformed reply: request \(reply.header.request), flags 0x\(String(reply.header.flags.rawValue, radix: 16))")
        }
    }
}
