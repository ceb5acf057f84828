import Logging
import VhostUserKit

/// Serves virtio-snd's four queues on their group's worker. Control requests are answered at once
/// (`SoundGroupHandler+Control`); transfer buffers are held per stream and completed period by period
/// on a timer that follows the stream's clock (deadline n = start + n × period on the monotonic
/// clock, so a late turn catches up instead of drifting); eventq buffers wait for jack and period
/// events.
final class SoundGroupHandler: GroupHandler {
    let device: SoundDevice
    /// VIRTIO_SND_F_CTLS was negotiated.
    let controlsNegotiated: Bool
    var state: SoundState?
    var logger = Logger(label: "vhost-user-snd")
    weak var group: QueueGroup?

    /// A running stream's pacing and held buffers (the worker's own; rebuilt when the group restarts).
    final class Pacing {
        let held = HeldBuffers(entries: 256, pieces: 2048)
        var timer: GroupTimer?
        var start: UInt64 = 0
        var periods: UInt64 = 0
        var maxLateness: UInt64 = 0
    }
    var pacing: [Pacing] = []
    /// One period's samples on their way between the held buffers and the host.
    var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 16)
    /// Eventq buffers: head and the 8 bytes of `virtio_snd_event` in guest memory.
    var eventBuffers: [(head: UInt16, event: UnsafeMutableRawPointer)] = []
    var droppedEvents = 0

    init(device: SoundDevice, controls: Bool) {
        self.device = device
        controlsNegotiated = controls
        eventBuffers.reserveCapacity(64)
    }

    deinit { scratch.deallocate() }

    func start(_ group: QueueGroup) {
        self.group = group
        logger = group.logger
        guard let state = device.takeState() else { return logger.error("snd: the device's state is held by another group") }
        self.state = state
        pacing = state.streams.map { _ in Pacing() }
        device.waker.withLock { $0 = group.waker }
        for (id, stream) in state.streams.enumerated() {
            if let parameters = stream.parameters { reserveScratch(parameters.periodBytes) }
            if stream.state == .running { startPacing(id) }
        }
        deliverJackEvents()
    }

    /// Held buffers go back (transfers IO_ERR, events unused); the state goes back to the device.
    func stop(_ group: QueueGroup) {
        device.waker.withLock { $0 = nil }
        guard let state else { return }
        for id in pacing.indices { returnHeld(id, status: .ioError) }
        if let eventQueue = group.queue(VirtioSound.eventQueue) {
            for buffer in eventBuffers { eventQueue.complete(head: buffer.head, written: 0) }
        }
        eventBuffers.removeAll()
        device.giveBack(state)
        self.state = nil
    }

    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        guard let state else { return .blocked }
        switch queue.index {
        case VirtioSound.controlQueue:
            while let chain = queue.nextChain() { queue.complete(chain, written: serveControl(chain, state)) }
        case VirtioSound.eventQueue:
            while let chain = queue.nextChain() {
                guard let first = chain.writable.first, first.count >= VirtioSound.eventSize, let base = first.baseAddress else {
                    logger.warning("snd: eventq buffer \(chain.head) has no room for an event")
                    queue.complete(chain, written: 0)
                    continue
                }
                eventBuffers.append((chain.head, base))
            }
            deliverJackEvents()
        default:
            while let chain = queue.nextChain() { take(chain, from: queue, state) }
        }
        return .done
    }

    func handle(_ event: GroupEvent, in group: QueueGroup) {
        switch event {
        case let .timer(timer):
            guard let id = pacing.firstIndex(where: { $0.timer == timer }) else { return }
            pacing[id].timer = nil
            runPeriods(id)
        case .wake:
            deliverJackEvents()
        case .ready:
            break
        }
    }

    // MARK: Transfers

    /// Takes a txq or rxq buffer: held for its stream, or answered at once when it is wrong.
    private func take(_ chain: DescriptorChain, from queue: Virtqueue, _ state: SoundState) {
        let capture = queue.index == VirtioSound.rxQueue
        // The status is the last 8 writable bytes, in one piece.
        guard let last = chain.writable.last(where: { $0.count > 0 }), last.count >= VirtioSound.pcmStatusSize,
              chain.writableLength >= VirtioSound.pcmStatusSize else {
            logger.warning("snd: transfer \(chain.head) has no room for its status")
            return queue.complete(chain, written: 0)
        }
        let status = last.baseAddress! + (last.count - VirtioSound.pcmStatusSize)
        var reader = chain.reader()
        guard let streamID = reader.read(UInt32.self), Int(streamID) < state.streams.count else {
            return answer(chain, queue, status, .badMessage, "a transfer for stream \(chain.readableLength < 4 ? "?" : "out of range")")
        }
        let id = Int(streamID)
        let stream = state.streams[id]
        guard stream.spec.direction == (capture ? .input : .output) else {
            return answer(chain, queue, status, .badMessage, "a \(capture ? "capture" : "playback") transfer for stream \(id), which is not")
        }
        guard stream.state.acceptsTransfers, let parameters = stream.parameters else {
            return answer(chain, queue, status, .badMessage, "a transfer for stream \(id) in state \(stream.state)")
        }
        let bytes = capture ? chain.writableLength - VirtioSound.pcmStatusSize : chain.readableLength - VirtioSound.xferHeaderSize
        guard bytes > 0, bytes % parameters.frameBytes == 0, !(capture && chain.readableLength != VirtioSound.xferHeaderSize) else {
            return answer(chain, queue, status, .badMessage, "a transfer of \(bytes) bytes for stream \(id) (frames of \(parameters.frameBytes))")
        }
        let held = capture
            ? pacing[id].held.hold(head: chain.head, status: status, buffers: chain.writable, skip: 0, trim: VirtioSound.pcmStatusSize)
            : pacing[id].held.hold(head: chain.head, status: status, buffers: chain.readable, skip: VirtioSound.xferHeaderSize, trim: 0)
        if !held { answer(chain, queue, status, .ioError, "stream \(id) holds too many buffers") }
    }

    private func answer(_ chain: DescriptorChain, _ queue: Virtqueue, _ status: UnsafeMutableRawPointer, _ code: VirtioSound.Status,
                        _ why: @autoclosure () -> String) {
        logger.warning("snd: refused \(why())")
        writeStatus(status, code, latency: 0)
        queue.complete(chain, written: queue.index == VirtioSound.rxQueue ? VirtioSound.pcmStatusSize : VirtioSound.pcmStatusSize)
    }

    private func writeStatus(_ status: UnsafeMutableRawPointer, _ code: VirtioSound.Status, latency: Int) {
        status.storeBytes(of: code.rawValue.littleEndian, as: UInt32.self)
        (status + 4).storeBytes(of: UInt32(clamping: latency).littleEndian, as: UInt32.self)
    }

    /// Completes every buffer stream `id` holds with `status` (RELEASE: OK; the group stopping: IO_ERR).
    func returnHeld(_ id: Int, status: VirtioSound.Status) {
        let capture = state?.streams[id].spec.direction == .input
        guard let queue = group?.queue(capture ? VirtioSound.rxQueue : VirtioSound.txQueue) else { return }
        let held = pacing[id].held
        while held.count > 0 {
            let entry = held.popFront()
            writeStatus(entry.status, status, latency: 0)
            queue.complete(head: entry.head, written: UInt32(VirtioSound.pcmStatusSize + (capture ? entry.done : 0)))
        }
    }

    // MARK: Pacing

    func reserveScratch(_ bytes: UInt32) {
        guard Int(bytes) > scratch.count else { return }
        scratch.deallocate()
        scratch = .allocate(byteCount: Int(bytes), alignment: 16)
    }

    func startPacing(_ id: Int) {
        guard let group, let parameters = state?.streams[id].parameters else { return }
        let p = pacing[id]
        p.start = monotonicNanoseconds()
        p.periods = 0
        p.timer = group.schedule(after: .nanoseconds(Int64(parameters.deadline(ofPeriod: 1, from: 0))))
    }

    func stopPacing(_ id: Int) {
        if let timer = pacing[id].timer { group?.cancel(timer) }
        pacing[id].timer = nil
    }

    /// Transfers every period of stream `id` that is due, then sets the timer for the next one.
    private func runPeriods(_ id: Int) {
        guard let group, let stream = state?.streams[id], stream.state == .running, let parameters = stream.parameters,
              let endpoint = stream.endpoint else { return }
        let p = pacing[id]
        let capture = stream.spec.direction == .input
        guard let queue = group.queue(capture ? VirtioSound.rxQueue : VirtioSound.txQueue) else { return }
        let period = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<Int(parameters.periodBytes)])
        var now = monotonicNanoseconds()
        var deadline = parameters.deadline(ofPeriod: p.periods + 1, from: p.start)
        while deadline <= now {
            p.maxLateness = max(p.maxLateness, now - deadline)
            if capture && p.held.count == 0 {
                // No buffer to fill: the period is lost to the guest (an overrun). The host side is
                // not read, so a file source continues where the guest left off.
                stream.underruns += 1
            } else if capture {
                endpoint.capture(into: period)
                parameters.format.scale(period, by: stream.gain)
                _ = p.held.transfer(period, reading: false) { entry in
                    writeStatus(entry.status, .ok, latency: endpoint.delayBytes)
                    queue.complete(head: entry.head, written: UInt32(entry.bytes + VirtioSound.pcmStatusSize))
                }
            } else {
                let moved = p.held.transfer(period, reading: true) { entry in
                    writeStatus(entry.status, .ok, latency: p.held.pendingBytes + endpoint.delayBytes)
                    queue.complete(head: entry.head, written: UInt32(VirtioSound.pcmStatusSize))
                }
                if moved < period.count {
                    stream.underruns += 1
                    (period.baseAddress! + moved).initializeMemory(as: UInt8.self, repeating: parameters.format.silenceByte,
                                                                   count: period.count - moved)
                }
                parameters.format.scale(period, by: stream.gain)
                endpoint.play(UnsafeRawBufferPointer(period))
            }
            p.periods += 1
            stream.periods += 1
            if device.periodEvents { postEvent(.pcmPeriodElapsed, data: UInt32(id)) }
            now = monotonicNanoseconds()
            deadline = parameters.deadline(ofPeriod: p.periods + 1, from: p.start)
        }
        p.timer = group.schedule(after: .nanoseconds(Int64(deadline - now)))
        publish(id)
    }

    /// Copies stream `id`'s counters where other threads can read them.
    func publish(_ id: Int) {
        guard let stream = state?.streams[id] else { return }
        let status = StreamStatus(state: stream.state, parameters: stream.parameters, periods: stream.periods,
                                  underruns: stream.underruns, maxLateness: pacing[id].maxLateness,
                                  volume: stream.volume, soundOn: stream.soundOn)
        device.published.withLock { $0[id] = status }
    }

    // MARK: Events

    /// Uses an eventq buffer for an event; without one, the event is dropped (and counted).
    func postEvent(_ code: VirtioSound.Code, data: UInt32) {
        guard !eventBuffers.isEmpty, let queue = group?.queue(VirtioSound.eventQueue) else {
            droppedEvents += 1
            return
        }
        let buffer = eventBuffers.removeFirst()
        buffer.event.storeBytes(of: code.rawValue.littleEndian, as: UInt32.self)
        (buffer.event + 4).storeBytes(of: data.littleEndian, as: UInt32.self)
        queue.complete(head: buffer.head, written: UInt32(VirtioSound.eventSize))
    }

    /// Reports the jack changes other threads asked for.
    private func deliverJackEvents() {
        guard let state, !eventBuffers.isEmpty else { return }
        let changes = device.pendingJackEvents.withLock { pending in
            let count = min(pending.count, eventBuffers.count)
            defer { pending.removeFirst(count) }
            return Array(pending.prefix(count))
        }
        for change in changes {
            state.jacks[change.jack].connected = change.connected
            postEvent(change.connected ? .jackConnected : .jackDisconnected, data: UInt32(change.jack))
        }
        if !changes.isEmpty { group?.wakeQueue(VirtioSound.eventQueue) }
    }
}
