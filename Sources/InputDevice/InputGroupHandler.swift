import CInput
import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Serves both queues of an `InputDevice` on the group's worker: moves source events into the pending
/// batches, whole batches into held eventq buffers, and statusq events back to the source.
final class InputGroupHandler: GroupHandler {
    private let device: InputDevice
    private var host: InputDevice.HostSide!
    private var held = HeldBuffers(capacity: 0)
    private var sourceWatch: Watch?
    /// Bytes read from an evdev source; a partial `struct input_event` stays at the front.
    private var readBuffer: [UInt8]
    private var readFill = 0
    private let kernelEventSize = Int(vhu_input_event_size())
    /// After SYN_DROPPED, events up to the next SYN_REPORT are discarded (evdev's rule).
    private var skippingToSync = false
    /// Problems already logged (each is logged once per group run, counted after).
    private var logged = Set<Problem>()
    private var overflowing = false

    enum Problem: Hashable {
        case smallEventBuffer, overlongBatch, undeclaredEvent, malformedStatus, unsupportedStatus, statusWriteFailed, sourceGone
    }

    init(device: InputDevice) {
        self.device = device
        readBuffer = [UInt8](repeating: 0, count: 64 * Int(vhu_input_event_size()))
    }

    func start(_ group: QueueGroup) {
        host = device.takeHost()
        held = HeldBuffers(capacity: group.queue(InputDevice.eventQueue)?.size ?? 0)
        switch host.source {
        case let .evdev(fd): sourceWatch = try? group.watch(fd.rawValue, for: .readable)
        case let .control(server): server.attach(to: group)
        case .none: break
        }
    }

    func stop(_ group: QueueGroup) {
        if let queue = group.queue(InputDevice.eventQueue) {
            // Buffers held for a batch that never came go back, each with a SYN_REPORT: drivers read
            // every completed buffer as an event whatever its length (Linux does), and a report with
            // nothing before it changes nothing (Linux's input core drops it). Never half a batch: the
            // pending ones stay for the next run.
            while held.count > 0 { queue.complete(head: held.fill(with: .synReport), written: UInt32(InputEvent.size)) }
        }
        if case let .control(server) = host.source { server.detach() }
        sourceWatch = nil
        device.giveBack(host)
    }

    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        if queue.index == InputDevice.statusQueue {
            serveStatus(queue, group)
            return .done
        }
        pump(queue, group)
        return held.isFull ? .blocked : .done
    }

    func handle(_ event: GroupEvent, in group: QueueGroup) {
        guard case let .ready(watch, _) = event else { return }
        switch host.source {
        case let .evdev(fd) where watch == sourceWatch:
            readEvdev(fd, group)
        case let .control(server):
            guard server.handle(watch, in: group, host: &host!) else { return }
        default:
            return
        }
        if let queue = group.queue(InputDevice.eventQueue) { pump(queue, group) }
    }

    // MARK: eventq

    /// Takes the driver's buffers and fills them with every whole batch they can hold.
    private func pump(_ queue: Virtqueue, _ group: QueueGroup) {
        while true {
            while !held.isFull, let chain = queue.nextChain() {
                if !held.hold(chain) {
                    report(.smallEventBuffer, group, "eventq buffer of \(chain.writableLength) writable bytes cannot take an event (8 bytes): returned empty")
                    queue.complete(chain, written: 0)
                }
            }
            if deliver(queue, group) == 0 || !queue.hasAvailable { break }
        }
    }

    /// Completes held buffers with whole batches, oldest first; returns the events delivered.
    private func deliver(_ queue: Virtqueue, _ group: QueueGroup) -> Int {
        var delivered = 0
        while host.pending.hasCompleteBatch {
            let length = host.pending.firstBatchLength
            let take: Int
            if length <= held.capacity {
                guard held.count >= length else { break }
                take = length
            } else {
                // Longer than the ring itself: it can only go in parts, each a full ring.
                guard held.isFull, held.capacity > 0 else { break }
                report(.overlongBatch, group, "a batch of \(length) events is longer than the eventq (\(held.capacity)): delivered in parts")
                take = held.capacity
            }
            for i in 0..<take {
                queue.complete(head: held.fill(with: host.pending.event(at: i)), written: UInt32(InputEvent.size))
            }
            host.pending.removeFirst(take)
            delivered += take
        }
        if overflowing && host.pending.count == 0 {
            overflowing = false
            group.logger.warning("eventq: the driver caught up; \(host.pending.droppedBatches) batch(es) (\(host.pending.droppedEvents) events) dropped so far")
        }
        return delivered
    }

    /// Holds `event` for the driver, dropping the oldest batches when the bound is reached.
    private func enqueue(_ event: InputEvent, _ group: QueueGroup) {
        guard device.description.declares(event) else {
            report(.undeclaredEvent, group, "dropping event \(event) (type \(event.type) code \(event.code)): not declared in the device's config")
            return
        }
        if host.pending.append(event) != .held && !overflowing {
            overflowing = true
            group.logger.warning("eventq: the driver offers no buffers and \(host.pending.capacity) events are held: dropping the oldest whole batches until it catches up")
        }
    }

    // MARK: evdev source

    private func readEvdev(_ fd: OwnedDescriptor, _ group: QueueGroup) {
        while true {
            let n = readBuffer.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress! + readFill, $0.count - readFill) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                if n == 0 || errno != EAGAIN {
                    // The device went away (ENODEV) or the stream ended: nothing more will come.
                    report(.sourceGone, group, "event source closed (\(n == 0 ? "end of stream" : SystemError.describe(errno))): no more events")
                    if let sourceWatch { group.unwatch(sourceWatch) }
                    sourceWatch = nil
                }
                return
            }
            readFill += n
            var offset = 0
            while readFill - offset >= kernelEventSize {
                let event = readBuffer.withUnsafeBytes { InputEvent(vhu_input_event_decode($0.baseAddress! + offset)) }
                offset += kernelEventSize
                take(event, group)
            }
            readBuffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: readFill - offset) }
            readFill -= offset
        }
    }

    /// One event from evdev: SYN_DROPPED discards the batch in progress and everything up to the next
    /// SYN_REPORT (the events in between are incomplete); the rest is held.
    private func take(_ event: InputEvent, _ group: QueueGroup) {
        if event.type == EventType.syn && event.code == SynCode.dropped {
            host.pending.discardOpenBatch()
            skippingToSync = true
            return
        }
        if skippingToSync {
            if event.isSynReport { skippingToSync = false }
            return
        }
        enqueue(event, group)
    }

    // MARK: statusq

    /// Each statusq buffer carries one event from the driver: written back to an evdev source (the
    /// kernel sets the LED or plays the effect), kept as state for a synthetic one.
    private func serveStatus(_ queue: Virtqueue, _ group: QueueGroup) {
        while let chain = queue.nextChain() {
            defer { queue.complete(chain, written: 0) }
            var reader = chain.reader()
            guard chain.readableLength == InputEvent.size, let packed = reader.read(UInt64.self) else {
                report(.malformedStatus, group, "statusq buffer of \(chain.readableLength) readable bytes is not one event (8 bytes): ignored")
                continue
            }
            let event = InputEvent(packed: UInt64(littleEndian: packed))
            guard [EventType.led, EventType.snd, EventType.rep, EventType.ff, EventType.syn].contains(event.type),
                  Int(event.code) < max(EventType.codeCount(event.type), 1) else {
                report(.unsupportedStatus, group, "statusq event \(event) is not a LED, sound, repeat or force-feedback event: ignored")
                continue
            }
            if event.type == EventType.led {
                if event.value != 0 { host.leds |= 1 << event.code } else { host.leds &= ~(1 << event.code) }
            }
            if case let .evdev(fd) = host.source { writeBack(event, fd, group) }
        }
    }

    private func writeBack(_ event: InputEvent, _ fd: OwnedDescriptor, _ group: QueueGroup) {
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))  // room for any struct input_event
        let written = withUnsafeMutableBytes(of: &bytes) { buffer in
            vhu_input_event_encode(event.kernel, buffer.baseAddress)
            return write(fd.rawValue, buffer.baseAddress, kernelEventSize)
        }
        if written != kernelEventSize {
            report(.statusWriteFailed, group, "writing status event \(event) to the device failed (\(SystemError.describe(errno)))")
        }
    }

    private func report(_ problem: Problem, _ group: QueueGroup, _ message: @autoclosure () -> String) {
        guard logged.insert(problem).inserted else { return }
        group.logger.warning("\(message()) (logged once)")
    }
}

extension InputEvent {
    init(_ event: vhu_input_event) { self.init(type: event.type, code: event.code, value: event.value) }
    var kernel: vhu_input_event { vhu_input_event(type: type, code: code, value: value) }
}
