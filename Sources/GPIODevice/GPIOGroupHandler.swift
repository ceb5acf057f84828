import Logging
import VhostUserKit

/// Serves a virtio-gpio device's requestq and eventq on their group's worker: line requests go to the
/// chip, eventq buffers wait in `LineInterrupts` until their line fires, and the chip's descriptors
/// (edge events, the control socket) are watched in the group's epoll set. The chip and the interrupt
/// state are the device's; the handler borrows them while the group runs.
final class GPIOGroupHandler: GroupHandler, GPIOChipEvents {
    private let device: GPIODevice
    /// VIRTIO_GPIO_F_IRQ was negotiated.
    private let interruptsNegotiated: Bool
    private var chip: (any GPIOChip)?
    private var interrupts = LineInterrupts(lineCount: 0)
    private weak var group: QueueGroup?
    private var eventQueue: Virtqueue?
    private var logger = Logger(label: "vhost-user-gpio")
    private var watchByDescriptor: [Int32: Watch] = [:]
    private var descriptorByWatch: [Watch: Int32] = [:]
    /// Eventq buffers were used since the requestq's pass began.
    private var eventsCompleted = false

    init(device: GPIODevice, interrupts: Bool) {
        self.device = device
        interruptsNegotiated = interrupts
    }

    func start(_ group: QueueGroup) {
        self.group = group
        logger = group.logger
        eventQueue = group.queue(VirtioGPIO.eventQueue)
        guard let state = device.takeState() else { return logger.error("gpio: the device's state is held by another group") }
        chip = state.chip
        interrupts = state.interrupts
        state.chip.attach(self)
    }

    /// The held eventq buffers go back INVALID (a Linux driver re-queues them for enabled lines, and
    /// latched edges are kept for then); the state goes back to the device.
    func stop(_ group: QueueGroup) {
        guard let chip else { return }
        for buffer in interrupts.takeBuffers() { complete(buffer, .invalid) }
        chip.detach()
        watchByDescriptor.removeAll()
        descriptorByWatch.removeAll()
        device.giveBack(GPIODevice.State(chip: chip, interrupts: interrupts))
        self.chip = nil
    }

    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        guard let chip else { return .blocked }
        if queue.index == VirtioGPIO.requestQueue {
            while let chain = queue.nextChain() { queue.complete(chain, written: serve(chain, chip)) }
            // A request that drove a loopback partner may have used eventq buffers: the worker
            // publishes only the queue it processed, so the eventq gets a turn of its own.
            if eventsCompleted { group.wakeQueue(VirtioGPIO.eventQueue) }
            eventsCompleted = false
        } else {
            while let chain = queue.nextChain() { unmask(chain, queue, chip) }
        }
        return .done
    }

    func handle(_ event: GroupEvent, in group: QueueGroup) {
        guard case let .ready(watch, _) = event, let fd = descriptorByWatch[watch] else { return }
        chip?.ready(fd)
    }

    // MARK: GPIOChipEvents

    func watch(_ fd: Int32) {
        guard let group, watchByDescriptor[fd] == nil else { return }
        do {
            let watch = try group.watch(fd, for: .readable)
            watchByDescriptor[fd] = watch
            descriptorByWatch[watch] = fd
        } catch {
            logger.error("gpio: cannot watch descriptor \(fd): \(error)")
        }
    }

    func unwatch(_ fd: Int32) {
        guard let watch = watchByDescriptor.removeValue(forKey: fd) else { return }
        descriptorByWatch[watch] = nil
        group?.unwatch(watch)
    }

    func lineChanged(_ line: Int, level: Bool) {
        if let buffer = interrupts.changed(line, to: level) { complete(buffer, .valid) }
    }

    // MARK: requestq

    /// Answers one request; returns the bytes written into its response.
    private func serve(_ chain: DescriptorChain, _ chip: any GPIOChip) -> Int {
        guard chain.writableLength >= 1 else {
            logger.warning("gpio: request \(chain.head) has no response buffer")
            return 0
        }
        var reader = chain.reader()
        guard chain.readableLength == VirtioGPIO.requestSize, let type = reader.read(UInt16.self),
              let gpio = reader.read(UInt16.self), let value = reader.read(UInt32.self) else {
            return refuse(chain, "a request of \(chain.readableLength) bytes (not \(VirtioGPIO.requestSize))")
        }
        guard let kind = VirtioGPIO.RequestType(rawValue: type) else { return refuse(chain, "unknown request type \(type)") }
        if kind == .getNames { return names(chain) }
        guard chain.writableLength >= VirtioGPIO.responseSize else {
            return refuse(chain, "a response buffer of \(chain.writableLength) bytes (not \(VirtioGPIO.responseSize))")
        }
        let line = Int(gpio)
        guard line < chip.lineCount else { return refuse(chain, "\(kind) on line \(line) of \(chip.lineCount)") }
        do {
            let result = try perform(kind, line: line, value: value, chip)
            return respond(chain, .ok, result)
        } catch {
            return refuse(chain, "\(kind) on line \(line) (value \(value)): \(error)")
        }
    }

    private func perform(_ kind: VirtioGPIO.RequestType, line: Int, value: UInt32, _ chip: any GPIOChip) throws(RequestRefusal) -> UInt8 {
        switch kind {
        case .getNames:
            return 0
        case .getDirection:
            return try onChip { () throws(GPIOChipError) in try chip.direction(of: line) }.rawValue
        case .setDirection:
            guard value <= UInt8.max, let direction = LineDirection(rawValue: UInt8(value)) else { throw .badValue }
            // Only an input interrupts; NONE also discards the line's state (5.17.6.2).
            if direction != .input { disableInterrupt(line, chip) }
            try onChip { () throws(GPIOChipError) in try chip.setDirection(direction, of: line) }
            return 0
        case .getValue:
            return try onChip { () throws(GPIOChipError) in try chip.value(of: line) } ? 1 : 0
        case .setValue:
            guard value <= 1 else { throw .badValue }
            try onChip { () throws(GPIOChipError) in try chip.setValue(value == 1, of: line) }
            return 0
        case .setIRQType:
            try setTrigger(line: line, value: value, chip)
            return 0
        }
    }

    /// A chip operation whose refusal becomes the request's.
    private func onChip<T>(_ operation: () throws(GPIOChipError) -> T) throws(RequestRefusal) -> T {
        do { return try operation() } catch { throw .chip(error) }
    }

    /// SET_IRQ_TYPE: enabling starts the chip's change reports on the line; NONE returns its eventq
    /// buffer INVALID. A trigger changes only through NONE (the driver's duty, 5.17.6.3).
    private func setTrigger(line: Int, value: UInt32, _ chip: any GPIOChip) throws(RequestRefusal) {
        guard interruptsNegotiated else { throw .interruptsNotNegotiated }
        guard value <= UInt8.max, let trigger = IRQTrigger(rawValue: UInt8(value)) else { throw .badValue }
        // A line the host keeps is refused whatever the trigger.
        let direction = try onChip { () throws(GPIOChipError) in try chip.direction(of: line) }
        let current = interrupts.triggers[line]
        if trigger == current { return }
        guard trigger == .none || current == .none else { throw .triggerChange(from: current, to: trigger) }
        if trigger == .none { return disableInterrupt(line, chip) }
        guard direction != .output else { throw .interruptOnOutput }
        try onChip { () throws(GPIOChipError) in try chip.setChangeReports(true, of: line) }
        _ = interrupts.setTrigger(trigger, of: line)
    }

    private func disableInterrupt(_ line: Int, _ chip: any GPIOChip) {
        guard interrupts.triggers[line] != .none else { return }
        if let buffer = interrupts.setTrigger(.none, of: line) { complete(buffer, .invalid) }
        do { try chip.setChangeReports(false, of: line) } catch { logger.warning("gpio: line \(line): \(error)") }
    }

    /// GET_NAMES: the status byte, then the names block (the response buffer holds exactly that).
    private func names(_ chain: DescriptorChain) -> Int {
        guard !device.names.isEmpty else { return refuse(chain, "GET_NAMES, but the lines have no names") }
        guard chain.writableLength >= 1 + device.names.count else {
            return refuse(chain, "GET_NAMES into \(chain.writableLength) bytes (the names need 1 + \(device.names.count))")
        }
        var writer = chain.writer()
        writer.write(VirtioGPIO.Status.ok.rawValue)
        device.names.withUnsafeBytes { _ = writer.write($0) }
        return writer.written
    }

    private func respond(_ chain: DescriptorChain, _ status: VirtioGPIO.Status, _ value: UInt8) -> Int {
        var writer = chain.writer()
        writer.write(status.rawValue)
        writer.write(value)
        return writer.written
    }

    /// Answers VIRTIO_GPIO_STATUS_ERR (and a zero value where the buffer has room) and logs why.
    private func refuse(_ chain: DescriptorChain, _ why: @autoclosure () -> String) -> Int {
        logger.warning("gpio: refused \(why())")
        return respond(chain, .error, 0)
    }

    // MARK: eventq

    /// Takes the driver's eventq buffer for a line (which unmasks its interrupt): holds it, uses it at
    /// once, or returns it INVALID.
    private func unmask(_ chain: DescriptorChain, _ queue: Virtqueue, _ chip: any GPIOChip) {
        guard let status = chain.writable.first(where: { $0.count > 0 })?.baseAddress else {
            logger.warning("gpio: eventq buffer \(chain.head) has no response buffer")
            return queue.complete(chain, written: 0)
        }
        let buffer = LineInterrupts.Buffer(head: chain.head, status: status)
        var reader = chain.reader()
        guard chain.readableLength == VirtioGPIO.irqRequestSize, let gpio = reader.read(UInt16.self) else {
            logger.warning("gpio: eventq buffer of \(chain.readableLength) bytes (not \(VirtioGPIO.irqRequestSize))")
            return complete(buffer, .invalid)
        }
        let line = Int(gpio)
        guard interruptsNegotiated, line < chip.lineCount else {
            logger.warning("gpio: eventq buffer for line \(line) of \(chip.lineCount)\(interruptsNegotiated ? "" : " without VIRTIO_GPIO_F_IRQ")")
            return complete(buffer, .invalid)
        }
        switch interrupts.unmask(line, with: buffer, level: { try? chip.value(of: line) }) {
        case .held: break
        case let .fire(buffer): complete(buffer, .valid)
        case let .refuse(buffer, reason):
            logger.debug("gpio: eventq buffer for line \(line) returned: \(reason)")
            complete(buffer, .invalid)
        }
    }

    private func complete(_ buffer: LineInterrupts.Buffer, _ status: VirtioGPIO.IRQStatus) {
        guard let eventQueue else { return }
        buffer.status.storeBytes(of: status.rawValue, as: UInt8.self)
        eventQueue.complete(head: buffer.head, written: UInt32(VirtioGPIO.irqResponseSize))
        eventsCompleted = true
    }
}

/// Why a request got VIRTIO_GPIO_STATUS_ERR.
enum RequestRefusal: Error, CustomStringConvertible {
    case badValue
    case interruptsNotNegotiated
    case interruptOnOutput
    case triggerChange(from: IRQTrigger, to: IRQTrigger)
    case chip(GPIOChipError)

    var description: String {
        switch self {
        case .badValue: "the value is out of range"
        case .interruptsNotNegotiated: "VIRTIO_GPIO_F_IRQ was not negotiated"
        case .interruptOnOutput: "an output line cannot interrupt"
        case let .triggerChange(from, to): "trigger \(to) while \(from) is enabled (disable it first)"
        case let .chip(error): "\(error)"
        }
    }
}
