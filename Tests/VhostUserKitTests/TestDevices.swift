import VhostUserKit

/// A device for testing the kit: every queue echoes each request's readable bytes into its writable
/// buffers (the used length is the number of bytes written), so tests can assert exactly what reached
/// the guest. It has a 16-byte config space whose first half is read-only, and opts into INFLIGHT_SHMFD.
final class LoopbackDevice: VhostUserDevice {
    static let virtioID: UInt32 = 0x7fff
    /// A device-specific feature bit, to check that GET_FEATURES offers it.
    static let deviceFeatureBit: UInt64 = 1 << 5
    static let defaultConfig: [UInt8] = Array(0xa0..<0xb0)
    /// Config bytes the front-end may write; the rest are read-only.
    static let writableConfig = 8..<16

    let queueCount: Int
    let maxQueueSize: Int
    let configSize: Int
    let extraProtocolFeatures: ProtocolFeatures

    struct State {
        var config = LoopbackDevice.defaultConfig
        var backend: BackendChannel?
        var backendChanges = 0
        var resets = 0
        /// Every SET_STATUS value, in order.
        var statuses: [UInt8] = []
        /// Chains each queue's handler processed (malformed chains never reach the handler).
        var served: [Int]
    }
    let state: Locked<State>

    init(queueCount: Int = 1, maxQueueSize: Int = 1024, configSize: Int = 16, inflight: Bool = true) {
        precondition(configSize <= Self.defaultConfig.count)
        self.queueCount = queueCount
        self.maxQueueSize = maxQueueSize
        self.configSize = configSize
        self.extraProtocolFeatures = inflight ? [.inflightShmfd] : []
        self.state = Locked(State(served: Array(repeating: 0, count: queueCount)))
    }

    var virtioDeviceID: UInt32 { Self.virtioID }
    var deviceFeatures: UInt64 { Self.deviceFeatureBit }

    var backend: BackendChannel? { state.withLock { $0.backend } }
    var resets: Int { state.withLock { $0.resets } }
    func served(queue: Int = 0) -> Int { state.withLock { $0.served[queue] } }

    func readConfig(offset: Int, count: Int) -> [UInt8] {
        state.withLock { Array($0.config[offset..<offset + count]) }
    }

    func writeConfig(offset: Int, bytes: [UInt8]) throws {
        guard Self.writableConfig.contains(offset), offset + bytes.count <= Self.writableConfig.upperBound else {
            throw DeviceError.readOnlyConfig
        }
        state.withLock { $0.config.replaceSubrange(offset..<offset + bytes.count, with: bytes) }
    }

    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler { LoopbackHandler(device: self) }

    func backendChannelChanged(_ channel: BackendChannel?) {
        state.withLock { $0.backend = channel; $0.backendChanges += 1 }
    }

    func reset() {
        state.withLock { $0.resets += 1; $0.config = Self.defaultConfig }
    }

    func statusChanged(_ status: UInt8) { state.withLock { $0.statuses.append(status) } }

    /// A device-specific request this device serves: the reply is the payload reversed.
    static let reverseRequest: UInt32 = 1000
    /// A device-specific request this device always refuses.
    static let refusedRequest: UInt32 = 1001

    func handleFrontendRequest(_ request: UInt32, payload: [UInt8], descriptors: [OwnedDescriptor]) throws -> DeviceReply? {
        switch request {
        case Self.reverseRequest: return DeviceReply(payload: payload.reversed())
        case Self.refusedRequest: throw DeviceError.readOnlyConfig
        default: throw DeviceError.unsupportedRequest
        }
    }

    /// A request whose first readable byte is this makes the queue worker post a config change on the
    /// back-end channel (and still echo).
    static let postConfigChangeByte: UInt8 = 0xcc

    fileprivate func recordServed(queue: Int) { state.withLock { $0.served[queue] += 1 } }

    /// State for DEVICE_STATE: the config space and a blob of any size (tests make it larger than a
    /// pipe's buffer).
    let blob = Locked<[UInt8]>([])
    static let stateKind = "loop"

    func saveState() throws -> DeviceState? {
        var w = ByteWriter()
        w.append(state.withLock { $0.config })
        let blob = blob.withLock { $0 }
        w.u32(UInt32(blob.count))
        w.append(blob)
        return DeviceState(kind: Self.stateKind, version: 1, payload: w.bytes)
    }

    /// Loads `bytes` (a saved state) and returns the blob it held.
    func stateRoundTrip(_ bytes: [UInt8]) throws -> [UInt8] {
        try loadState(try DeviceState(decoding: bytes))
        return blob.withLock { $0 }
    }

    func loadState(_ saved: DeviceState) throws {
        try saved.expect(kind: Self.stateKind, versions: 1...1)
        var r = DeviceStateReader(saved)
        let config = try r.bytes(Self.defaultConfig.count)
        let blob = try r.bytes(try r.count(max: DeviceState.maximumPayload))
        try r.finish()
        state.withLock { $0.config = config }
        self.blob.withLock { $0 = blob }
    }
}

/// Copies a chain's readable bytes into its writable buffers through `bounce`; returns the bytes written.
func echo(_ chain: DescriptorChain, bounce: inout [UInt8]) -> Int {
    if bounce.count < chain.readableLength { bounce = [UInt8](repeating: 0, count: chain.readableLength) }
    var reader = chain.reader()
    let n = bounce.withUnsafeMutableBytes { reader.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<chain.readableLength])) }
    var writer = chain.writer()
    return bounce.withUnsafeBytes { writer.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
}

final class LoopbackHandler: QueueHandler {
    private let device: LoopbackDevice
    private var bounce: [UInt8] = []
    init(device: LoopbackDevice) { self.device = device }

    func process(_ queue: Virtqueue) -> ProcessResult {
        while let chain = queue.nextChain() {
            let written = echo(chain, bounce: &bounce)
            if written > 0 && bounce[0] == LoopbackDevice.postConfigChangeByte { device.backend?.post(.configChangeMsg) }
            queue.complete(chain, written: written)
            device.recordServed(queue: queue.index)
        }
        return .done
    }
}

// MARK: - Asynchronous variant

/// The same echo, but completed from another thread: the handler copies what it needs out of each chain
/// (the readable bytes, the head, the writable buffers' host addresses, which stay valid while the queue
/// runs), and a completer thread writes the reply and completes the chains through the queue's
/// completion port — in REVERSE order, once `batch` chains are held (or when the queue stops).
final class AsyncLoopbackDevice: VhostUserDevice {
    let batch: Int
    let queueCount = 1
    let maxQueueSize = 1024
    /// Chains taken from the ring and not yet completed.
    let held = Locked(0)
    /// How many times a queue handler was asked to stop while it still held chains.
    let flushedOnStop = Locked(0)

    init(batch: Int) { self.batch = batch }

    var virtioDeviceID: UInt32 { LoopbackDevice.virtioID }
    var deviceFeatures: UInt64 { 0 }

    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler { AsyncLoopbackHandler(device: self) }
}

/// What the completer needs from one chain, copied before the next `nextChain()` call.
struct HeldChain: @unchecked Sendable {
    var head: UInt16
    var data: [UInt8]
    /// Host views of the writable buffers: guest memory, valid until the queue stops.
    var writable: [UnsafeMutableRawBufferPointer]
}

final class AsyncLoopbackHandler: QueueHandler {
    private let device: AsyncLoopbackDevice
    private var completer: Completer?
    init(device: AsyncLoopbackDevice) { self.device = device }

    func process(_ queue: Virtqueue) -> ProcessResult {
        let completer = self.completer ?? Completer(port: queue.completionPort, device: device)
        self.completer = completer
        while let chain = queue.nextChain() {
            var data = [UInt8](repeating: 0, count: chain.readableLength)
            var reader = chain.reader()
            data.withUnsafeMutableBytes { _ = reader.read(into: $0) }
            device.held.withLock { $0 += 1 }
            completer.add(HeldChain(head: chain.head, data: data, writable: Array(chain.writable)))
        }
        return .done
    }

    /// The queue stops: every held chain must be completed before the worker's final publish.
    func stop(_ queue: Virtqueue) {
        if device.held.withLock({ $0 }) > 0 { device.flushedOnStop.withLock { $0 += 1 } }
        completer?.stopAndFlush()
        completer = nil
    }
}

final class Completer: @unchecked Sendable {
    private let port: CompletionPort
    private let device: AsyncLoopbackDevice
    private let wake: EventFD
    private let pending = Locked<(chains: [HeldChain], stopping: Bool)>(([], false))
    private var thread: PosixThread?

    init(port: CompletionPort, device: AsyncLoopbackDevice) {
        self.port = port
        self.device = device
        self.wake = try! EventFD()
        thread = PosixThread { [self] in run() }
    }

    func add(_ chain: HeldChain) {
        pending.withLock { $0.chains.append(chain) }
        wake.signal()
    }

    func stopAndFlush() {
        pending.withLock { $0.stopping = true }
        wake.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        let batch = device.batch
        while true {
            _ = wake.wait(timeoutMilliseconds: -1)
            let (ready, stop) = pending.withLock { p -> ([HeldChain], Bool) in
                guard p.chains.count >= batch || p.stopping else { return ([], false) }
                defer { p.chains = [] }
                return (p.chains, p.stopping)
            }
            for chain in ready.reversed() {
                var written = 0
                for buffer in chain.writable where written < chain.data.count {
                    let n = min(buffer.count, chain.data.count - written)
                    chain.data.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + written, byteCount: n) }
                    written += n
                }
                device.held.withLock { $0 -= 1 }
                port.complete(head: chain.head, written: UInt32(written))
            }
            if stop { return }
        }
    }
}
