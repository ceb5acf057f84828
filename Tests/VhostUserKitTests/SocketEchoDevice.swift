import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The shape of a device whose queues share state, in miniature: what console, vsock, snd and input
/// copy. Queue 0 (transmit) carries the driver's bytes to a host socket; queue 1 (receive) carries the
/// socket's bytes back to the driver. Both queues form one group, served by one handler on one worker
/// thread: the handler watches the socket there, and holds received bytes back until `batchBytes`
/// arrived or the socket was quiet for `flushDelay` (a serial port's character timeout), with a timer.
///
/// State that outlives a group restart (the socket, bytes not yet delivered) belongs to the device:
/// the handler takes it when the group starts and gives it back when it stops. Another thread may
/// `attach` a new socket while the group runs: it wakes the group, whose handler moves its watch.
final class SocketEchoDevice: VhostUserDevice {
    static let transmitQueue = 0, receiveQueue = 1

    let flushDelay: Duration
    let batchBytes: Int

    /// What a running handler borrows.
    struct HostSide {
        var socket: OwnedDescriptor?
        var received: [UInt8] = []
    }
    private let host: Locked<HostSide>
    /// A socket `attach` handed over for the running handler to pick up.
    private let incoming = Locked<OwnedDescriptor?>(nil)
    private let waker = Locked<GroupWaker?>(nil)
    /// What the handlers did, in order, for the tests to check: "start [0, 1]", "process 1", "timer"...
    let log = Locked<[String]>([])

    init(socket: OwnedDescriptor, flushDelay: Duration = .milliseconds(50), batchBytes: Int = 16) {
        host = Locked(HostSide(socket: socket))
        self.flushDelay = flushDelay
        self.batchBytes = batchBytes
    }

    var virtioDeviceID: UInt32 { 0x7ffe }
    var deviceFeatures: UInt64 { 0 }
    var queueCount: Int { 2 }
    var maxQueueSize: Int { 256 }
    var queueGroups: [[Int]] { [[Self.transmitQueue, Self.receiveQueue]] }

    func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler { Handler(device: self) }

    /// Serves `socket` from now on (any thread): a running group switches over at once.
    func attach(_ socket: OwnedDescriptor) {
        incoming.withLock { $0 = socket }
        waker.withLock { $0 }?.wake()
    }

    /// The socket `attach` handed over, if any, taken by the running handler.
    func takeIncoming() -> OwnedDescriptor? { incoming.withLock { s in defer { s = nil }; return s } }

    func record(_ entry: String) { log.withLock { $0.append(entry) } }
    var entries: [String] { log.withLock { $0 } }

    final class Handler: GroupHandler {
        let device: SocketEchoDevice
        var host = HostSide()
        var watch: Watch?
        var flushTimer: GroupTimer?
        /// The quiet time passed (or enough bytes arrived): deliver what was received.
        var flushDue = false
        /// The buffer is full: the socket is not read until the driver takes some.
        var paused = false
        var chunk = [UInt8](repeating: 0, count: 4096)

        init(device: SocketEchoDevice) { self.device = device }

        func start(_ group: QueueGroup) {
            host = device.host.withLock { h in defer { h = HostSide() }; return h }
            device.waker.withLock { $0 = group.waker }
            device.record("start \(group.queues.map(\.index))")
            if let fresh = device.takeIncoming() { host.socket = fresh }
            watchSocket(group)
            flushDue = !host.received.isEmpty
        }

        func stop(_ group: QueueGroup) {
            device.waker.withLock { $0 = nil }
            device.host.withLock { $0 = host }
            device.record("stop")
        }

        func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
            device.record("process \(queue.index)")
            return queue.index == SocketEchoDevice.transmitQueue ? transmit(queue) : receive(queue, group)
        }

        func handle(_ event: GroupEvent, in group: QueueGroup) {
            switch event {
            case .ready:
                device.record("ready")
                readSocket(group)
            case .timer:
                device.record("timer")
                flushTimer = nil
                flushDue = true
                group.wakeQueue(SocketEchoDevice.receiveQueue)
            case .wake:
                device.record("wake")
                if let fresh = device.takeIncoming() {
                    if let watch { group.unwatch(watch) }
                    watch = nil
                    host.socket = fresh
                    watchSocket(group)
                }
            }
        }

        private func watchSocket(_ group: QueueGroup) {
            guard let socket = host.socket else { return }
            watch = try? group.watch(socket.rawValue, for: paused ? [] : .readable)
        }

        /// Sends each chain's bytes to the socket (a blocking write keeps the example short; a real
        /// device would keep them and watch for `.writable`).
        private func transmit(_ queue: Virtqueue) -> ProcessResult {
            while let chain = queue.nextChain() {
                var reader = chain.reader()
                let n = chunk.withUnsafeMutableBytes { reader.read(into: $0) }
                if let socket = host.socket { _ = chunk.withUnsafeBytes { write(socket.rawValue, $0.baseAddress, n) } }
                queue.complete(chain, written: 0)
            }
            return .done
        }

        /// Moves received bytes into the driver's buffers once they are due; with bytes left and no
        /// buffer, waits for the driver's next kick.
        private func receive(_ queue: Virtqueue, _ group: QueueGroup) -> ProcessResult {
            guard flushDue else { return .blocked }
            while !host.received.isEmpty, let chain = queue.nextChain() {
                var writer = chain.writer()
                let n = host.received.withUnsafeBytes { writer.write(UnsafeRawBufferPointer(rebasing: $0[0..<min($0.count, chain.writableLength)])) }
                host.received.removeFirst(n)
                queue.complete(chain, written: n)
            }
            if host.received.isEmpty { flushDue = false }
            if paused && host.received.count < chunk.count {
                paused = false
                if let watch { try? group.change(watch, to: .readable) } else { watchSocket(group) }
            }
            return .blocked
        }

        private func readSocket(_ group: QueueGroup) {
            guard let socket = host.socket, let watch else { return }
            let room = chunk.count - host.received.count
            guard room > 0 else {
                // Paused, yet reported: the peer hung up. Watch again once the driver made room.
                group.unwatch(watch)
                self.watch = nil
                return
            }
            let n = chunk.withUnsafeMutableBytes { recv(socket.rawValue, $0.baseAddress, room, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                host.received += chunk[0..<n]
            } else if n == 0 || errno != EAGAIN {
                group.unwatch(watch)  // the peer closed: nothing more will come
                self.watch = nil
            }
            if host.received.count >= chunk.count, let watch = self.watch {
                paused = true
                try? group.change(watch, to: [])
            }
            if host.received.count >= device.batchBytes {
                if let flushTimer { group.cancel(flushTimer) }
                flushTimer = nil
                flushDue = true
                group.wakeQueue(SocketEchoDevice.receiveQueue)
            } else if flushTimer == nil && !host.received.isEmpty {
                flushTimer = group.schedule(after: device.flushDelay)
            }
        }
    }
}
