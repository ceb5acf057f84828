import CVhostUser
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Every suite of the target nests in this one, which runs its tests one at a time: the reconnect test
/// counts the process's descriptors and resident memory, which tests running alongside would disturb.
/// Each test still brings up its own daemon.
@Suite("VhostUserKit", .serialized)
struct KitTests {}

/// Bytes 0, 1, 2... offset by `seed`, so different requests carry different data.
func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed &* 31 &+ 1) }
}

/// An echo request in flight: where its input and output live.
struct EchoRequest {
    let head: UInt16
    let input: UInt64
    let output: UInt64
    let payload: [UInt8]
    let memory: FakeGuestMemory
    /// What the device wrote to the output buffer.
    var echoed: [UInt8] { memory.read(output, count: payload.count) }
}

/// Submits an echo request (one readable, one writable buffer in `region`, default the last one).
func submitEcho(_ q: FakeQueue, _ payload: [UInt8], region: Int? = nil, indirect: Bool = false) -> EchoRequest {
    let input = q.memory.allocate(payload.count, region: region)
    let output = q.memory.allocate(payload.count, region: region)
    q.memory.write(payload, at: input)
    let head = q.submit([.readable(input, payload.count), .writable(output, payload.count)], indirect: indirect)
    return EchoRequest(head: head, input: input, output: output, payload: payload, memory: q.memory)
}

/// Checks that `used` completes `request` with its bytes echoed into guest memory.
func expectEchoed(_ used: UsedElement?, _ request: EchoRequest, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(used?.id == UInt32(request.head), sourceLocation: sourceLocation)
    #expect(used?.length == UInt32(request.payload.count), sourceLocation: sourceLocation)
    #expect(request.echoed == request.payload, sourceLocation: sourceLocation)
}

/// Checks used elements against (head, length) pairs, in order.
func expectUsed(_ used: [UsedElement], _ expected: [(UInt16, UInt32)], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(used.map(\.id) == expected.map { UInt32($0.0) }, sourceLocation: sourceLocation)
    #expect(used.map(\.length) == expected.map(\.1), sourceLocation: sourceLocation)
}

/// Sends one echo request, kicks (unless `notify` is false) and checks the answer.
@discardableResult
func expectEcho(_ q: FakeQueue, _ payload: [UInt8] = pattern(100), region: Int? = nil, indirect: Bool = false,
                notify: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws -> UsedElement {
    let request = submitEcho(q, payload, region: region, indirect: indirect)
    if notify { q.notifyDevice() }
    let used = try q.waitForUsed(1)
    #expect(used.count == 1, sourceLocation: sourceLocation)
    expectEchoed(used.first, request, sourceLocation: sourceLocation)
    return used[0]
}

/// Checks that nothing is completed on `q` for a short while (for "must not be served" rules).
func expectNothingUsed(_ q: FakeQueue, milliseconds: Int = 200, sourceLocation: SourceLocation = #_sourceLocation) {
    let before = q.publishedUsedIndex
    let got = try? q.waitForUsed(1, timeoutMilliseconds: milliseconds)
    #expect(got == nil, "served: \(got ?? [])", sourceLocation: sourceLocation)
    #expect(q.publishedUsedIndex == before, sourceLocation: sourceLocation)
}

/// Polls `condition` until it holds or `timeoutMilliseconds` pass.
func waitUntil(timeoutMilliseconds: Int = 5000, _ condition: () -> Bool) -> Bool {
    let deadline = nowMilliseconds() + timeoutMilliseconds
    while !condition() {
        if nowMilliseconds() > deadline { return false }
        usleep(200)
    }
    return true
}

func nowMilliseconds() -> Int { Int(monotonicNanoseconds() / 1_000_000) }

/// A round trip through the control thread: once the reply arrives, every earlier message was handled.
func barrier(_ f: FakeFrontend) throws { _ = try f.getQueueNum() }

/// Sends `request` asking for an ack and returns it (REPLY_ACK must be negotiated).
func ack(_ f: FakeFrontend, _ request: FrontendRequest, _ payload: [UInt8] = [], descriptors: [Int32] = []) throws -> UInt64? {
    try f.command(request, payload: payload, descriptors: descriptors, needReply: true)
}

/// Sends `request` asking for an ack and expects success (0).
func expectAck(_ f: FakeFrontend, _ request: FrontendRequest, _ payload: [UInt8] = [], descriptors: [Int32] = [],
               sourceLocation: SourceLocation = #_sourceLocation) throws {
    let value = try ack(f, request, payload, descriptors: descriptors)
    #expect(value == 0, "\(request) acked \(value.map(String.init) ?? "nothing")", sourceLocation: sourceLocation)
}

/// Sends `request` asking for an ack and expects a failure (non-zero).
func expectNack(_ f: FakeFrontend, _ request: FrontendRequest, _ payload: [UInt8] = [], descriptors: [Int32] = [],
                sourceLocation: SourceLocation = #_sourceLocation) throws {
    let value = try ack(f, request, payload, descriptors: descriptors)
    #expect(value != nil && value != 0, "\(request) acked \(value.map(String.init) ?? "nothing")", sourceLocation: sourceLocation)
}

/// Sends a raw header (and payload) with any request number and flags.
func sendRaw(_ f: FakeFrontend, request: UInt32, flags: UInt32 = 1, size: UInt32? = nil, payload: [UInt8] = [], descriptors: [Int32] = []) throws {
    let header = MessageHeader(request: request, flags: .init(rawValue: flags), size: size ?? UInt32(payload.count))
    try f.sendRaw(header.encoded() + payload, descriptors: descriptors)
}

/// The next message from the daemon, whatever it is, or nil on timeout.
func receiveAny(_ f: FakeFrontend, timeoutMilliseconds: Int32 = 5000) throws -> Message? {
    var p = pollfd(fd: f.channel.socket.rawValue, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, timeoutMilliseconds) == 1 else { return nil }
    return try f.channel.receive()
}

/// Whether the daemon closed the connection: reads (and discards) until end of file or a reset.
func connectionDropped(_ f: FakeFrontend, timeoutMilliseconds: Int32 = 5000) -> Bool {
    let fd = f.channel.socket.rawValue
    var buffer = [UInt8](repeating: 0, count: 256)
    while true {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) == 1 else { return false }
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 {
            if errno == ECONNRESET { return true }
            if errno == EAGAIN || errno == EINTR { continue }
            return false
        }
    }
}

/// Brings a device up by hand, with control over what the profiles always do the same way.
/// With `protocolFeatures` it negotiates every protocol feature offered (so commands can be acked)
/// and VHOST_USER_F_PROTOCOL_FEATURES (so rings start disabled); without, neither.
func manualSetUp(_ f: FakeFrontend, memory: FakeGuestMemory, queues: [FakeQueue], protocolFeatures: Bool = true,
                 kickFD: Bool = true, callFD: Bool = true, enable: Bool = true, base: UInt16 = 0,
                 maskFeatures: UInt64 = 0) throws {
    let offered = try f.getFeatures()
    var features = offered & ~maskFeatures
    if protocolFeatures {
        try f.setProtocolFeatures(try f.getProtocolFeatures())
    } else {
        features &= ~VirtioFeature.protocolFeatures
    }
    try f.setOwner()
    try f.setFeatures(features)
    try f.setMemTable(memory)
    for q in queues {
        q.eventIdx = features & VirtioFeature.ringEventIdx != 0
        try f.setVringNum(q.index, q.size)
        try f.setVringBase(q.index, base)
        try f.setVringAddr(q.address)
        try f.setVringCall(q.index, callFD ? q.call : nil)
        try f.setVringKick(q.index, kickFD ? q.kick : nil)
        if enable && protocolFeatures { try f.setVringEnable(q.index, true) }
    }
    try barrier(f)
}

/// Connects a fresh front-end to `daemon`, sets it up and checks a request is served: the daemon
/// survived whatever the test did to the previous connection (which must be closed by now).
func expectFreshConnectionServed(_ daemon: InProcessDaemon, profile: FrontendProfile = .qemu,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
    let fresh = try ConnectedFrontend(daemon.connect(), profile: profile, memorySize: 1 << 20)
    try expectEcho(fresh.queue, pattern(64, seed: 99), sourceLocation: sourceLocation)
}

/// Closes `fixture`'s connection, then checks its daemon serves a fresh one (as above).
func expectFreshConnectionServed(after fixture: DeviceFixture<some VhostUserDevice>, profile: FrontendProfile = .qemu,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
    fixture.frontend.disconnect()
    try expectFreshConnectionServed(fixture.daemon, profile: profile, sourceLocation: sourceLocation)
}

/// Open descriptors of this process.
func openDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { count += 1 }
    }
    return count - 1 // the directory stream's own descriptor
}

/// Resident memory of this process in KiB (VmRSS).
func residentKiB() -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmRSS:") {
            return Int(text.dropFirst(6).filter { $0.isNumber }) ?? -1
        }
    }
    return -1
}

/// The memory that growth checks watch, in KiB: resident memory, or under AddressSanitizer the live
/// bytes of its allocator. ASan holds freed blocks in a quarantine (256 MiB by default), so resident
/// memory grows with every freed block until that fills; LeakSanitizer checks for leaked blocks at exit.
func memoryInUseKiB() -> Int {
    typealias AllocatedBytes = @convention(c) () -> Int
    if dlsym(nil, "__asan_init") != nil, let allocated = dlsym(nil, "__sanitizer_get_current_allocated_bytes") {
        return unsafeBitCast(allocated, to: AllocatedBytes.self)() / 1024
    }
    return residentKiB()
}
