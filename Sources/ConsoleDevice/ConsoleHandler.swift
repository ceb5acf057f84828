import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Serves every queue of the console on one worker: the ports' data queues, the control queues, and
/// the host descriptors (ports' terminals, sockets and listeners, SIGWINCH, resize requests).
final class ConsoleHandler: GroupHandler {
    let device: ConsoleDevice
    let multiport: Bool
    private var state: ConsoleState!
    private var group: QueueGroup!
    /// What each watch is for.
    private enum Role { case io(Int), output(Int), listener(Int), signals, resizeListener, resizeClient(ResizeControl.Client) }
    private var roles: [Watch: Role] = [:]
    private var sizeTimer: GroupTimer?
    /// A chain's bytes always fit after the bound (bigger chains grow the buffer once).
    static let chainAllowance = 64 << 10
    /// Control messages held for the driver at most (a driver that never gives buffers cannot grow it).
    static let controlBacklogLimit = 1024
    private var bound: Int { device.options.bufferBytes }

    init(device: ConsoleDevice, multiport: Bool) {
        self.device = device
        self.multiport = multiport
    }

    private var ports: [PortState] { state.ports }

    // MARK: GroupHandler

    func start(_ group: QueueGroup) {
        self.group = group
        state = device.lend(to: group.waker)
        applyResets()
        if !multiport { ports[0].guestOpen = true }
        for port in ports {
            port.forgetWatches()
            if port.endpoint.listener != nil && !port.endpoint.hasPeer { watchListener(port) }
            updateWatches(port)
        }
        if let signals = state.windowSignals { watch(signals.descriptor.rawValue, .readable, as: .signals) }
        if let control = state.resizeControl {
            control.listenerWatch = watch(control.listener.rawValue, .readable, as: .resizeListener)
            for client in control.clients { client.watch = watch(client.socket.rawValue, .readable, as: .resizeClient(client)) }
        }
        if ports[0].endpoint.kind.isPty { sizeTimer = group.schedule(after: device.options.ptySizeInterval) }
        takeRequests()
    }

    func stop(_ group: QueueGroup) {
        roles.removeAll()
        sizeTimer = nil
        device.takeBack(state)
        state = nil
        self.group = nil
    }

    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        switch queue.index {
        case VirtioConsole.controlReceiveQueue: return deliverControl(queue)
        case VirtioConsole.controlTransmitQueue: return receiveControl(queue)
        default:
            guard let id = VirtioConsole.port(ofQueue: queue.index), id < ports.count, multiport || id == 0 else {
                // A queue of a port the device does not have (max_nr_ports > ports): nothing to carry.
                while let chain = queue.nextChain() { queue.complete(chain, written: 0) }
                return .done
            }
            return queue.index == VirtioConsole.receiveQueue(port: id) ? deliver(ports[id], queue) : transmit(ports[id], queue)
        }
    }

    func handle(_ event: GroupEvent, in group: QueueGroup) {
        switch event {
        case let .ready(watch, readiness):
            guard let role = roles[watch] else { return }
            switch role {
            case let .io(id): serviceIO(ports[id], readiness)
            case let .output(id): flush(ports[id])
            case let .listener(id): attachClient(ports[id])
            case .signals:
                if state.windowSignals?.drain() == true, let fd = ports[0].endpoint.terminal, let size = windowSize(fd) { apply(size) }
            case .resizeListener: acceptResizeClient()
            case let .resizeClient(client): serviceResizeClient(client)
            }
        case .timer:
            sizeTimer = group.schedule(after: device.options.ptySizeInterval)
            if let fd = ports[0].endpoint.terminal, let size = windowSize(fd) { apply(size) }
        case .wake:
            applyResets()
            takeRequests()
        }
    }

    // MARK: Guest output (transmit queues)

    /// Takes the guest's output into the port's buffer while it is below the bound, then writes what
    /// the host takes. The console without a host peer keeps serving and keeps the newest bytes.
    private func transmit(_ port: PortState, _ queue: Virtqueue) -> ProcessResult {
        let discarding = port.isConsole && !port.endpoint.hasPeer
        while port.toHost.count < bound || discarding, let chain = queue.nextChain() {
            var reader = chain.reader()
            if chain.readableLength > port.toHost.free {
                if discarding {
                    port.toHost.consume(min(port.toHost.count, chain.readableLength - port.toHost.free))
                } else {
                    port.toHost.grow(to: port.toHost.count + chain.readableLength)
                }
            }
            _ = port.toHost.append(from: &reader)
            queue.complete(chain, written: 0)
            if discarding { discardOverflow(port) }
        }
        flush(port)
        return port.toHost.count >= bound && !discarding ? .blocked : .done
    }

    /// Keeps the console's newest `bound` bytes while nobody reads them.
    private func discardOverflow(_ port: PortState) {
        guard port.toHost.count > bound else { return }
        port.toHost.consume(port.toHost.count - bound)
        if !port.overflowReported {
            port.overflowReported = true
            device.report("port \(port.id): no host peer; keeping only the newest \(bound) bytes of guest output")
        }
    }

    /// Writes the port's buffered output to its host side, as much as it takes now.
    private func flush(_ port: PortState) {
        let fd = port.endpoint.output
        let wasFull = port.toHost.count >= bound
        if fd >= 0, !port.toHost.isEmpty {
            let n = port.toHost.write(to: fd, socket: port.endpoint.isSocket)
            if n < 0 && errno != EAGAIN && errno != EINTR {
                let reason = SystemError.describe(errno)
                if port.endpoint.isSocket {
                    detachClient(port)
                } else {
                    device.report("port \(port.id): writing guest output failed (\(reason)); \(port.toHost.count) bytes discarded")
                    port.toHost.consume(port.toHost.count)
                }
            }
            port.outputBlocked = !port.toHost.isEmpty && port.endpoint.output >= 0
            if port.toHost.isEmpty { port.overflowReported = false }
            updateWatches(port)
        }
        if wasFull && port.toHost.count < bound { group.wakeQueue(VirtioConsole.transmitQueue(port: port.id)) }
    }

    // MARK: Host input (receive queues)

    /// Gives the port's buffered host input to the guest's receive buffers, once the guest has the
    /// port open (the driver discards what arrives for a closed port).
    private func deliver(_ port: PortState, _ queue: Virtqueue) -> ProcessResult {
        guard port.guestOpen else { return .blocked }
        let wasFull = port.toGuest.free == 0
        while !port.toGuest.isEmpty, let chain = queue.nextChain() {
            var writer = chain.writer()
            let n = port.toGuest.drain(into: &writer)
            queue.complete(chain, written: n)
        }
        if wasFull && port.toGuest.free > 0 { updateWatches(port) }
        if port.toGuest.isEmpty && port.closePending { reportOpen(port, false) }
        return .blocked
    }

    private func serviceIO(_ port: PortState, _ readiness: Readiness) {
        if readiness.contains(.writable) { flush(port) }
        if readiness != .writable { readInput(port) }  // readable, or hung up: a read says which
    }

    /// Reads host input into the port's buffer (one read, as much as fits).
    private func readInput(_ port: PortState) {
        let fd = port.endpoint.input
        guard fd >= 0, !port.inputClosed, port.toGuest.free > 0 else { return }
        let n = port.toGuest.read(from: fd)
        if n > 0 {
            group.wakeQueue(VirtioConsole.receiveQueue(port: port.id))
        } else if n == 0 || (errno != EAGAIN && errno != EINTR && errno != EIO) {
            // The peer is gone: a socket client detaches; the daemon's standard input ended.
            if port.endpoint.isSocket { detachClient(port) } else { port.inputClosed = true }
        }
        updateWatches(port)
    }

    // MARK: Host peers

    private func watchListener(_ port: PortState) {
        guard let listener = port.endpoint.listener, port.listenerWatch == nil else { return }
        port.listenerWatch = watch(listener.rawValue, .readable, as: .listener(port.id))
    }

    private func attachClient(_ port: PortState) {
        guard port.endpoint.acceptClient() else { return }
        if let w = port.listenerWatch { unwatch(w) }
        port.listenerWatch = nil  // later clients wait in the backlog until this one leaves
        port.closePending = false
        port.overflowReported = false
        reportOpen(port, true)
        updateWatches(port)
        flush(port)
    }

    private func detachClient(_ port: PortState) {
        if let w = port.ioWatch { unwatch(w) }
        port.ioWatch = nil
        port.endpoint.dropClient()
        port.outputBlocked = false
        watchListener(port)
        if port.toGuest.isEmpty { reportOpen(port, false) } else { port.closePending = true }
        group.wakeQueue(VirtioConsole.transmitQueue(port: port.id))
    }

    /// Watches the port's descriptors for what it wants now: input while its buffer has room, output
    /// while a write would block. A descriptor with nothing wanted is not watched at all (a hung-up
    /// socket would otherwise report itself forever).
    private func updateWatches(_ port: PortState) {
        let input = port.endpoint.input, output = port.endpoint.output
        let wantsInput = input >= 0 && !port.inputClosed && port.toGuest.free > 0
        let wantsOutput = output >= 0 && port.outputBlocked
        if input == output {
            sync(&port.ioWatch, fd: input, (wantsInput ? Readiness.readable : []).union(wantsOutput ? .writable : []), as: .io(port.id))
        } else {
            sync(&port.ioWatch, fd: input, wantsInput ? .readable : [], as: .io(port.id))
            sync(&port.outputWatch, fd: output, wantsOutput ? .writable : [], as: .output(port.id))
        }
    }

    private func sync(_ slot: inout Watch?, fd: Int32, _ interest: Readiness, as role: Role) {
        if interest.isEmpty || fd < 0 {
            if let w = slot { unwatch(w) }
            slot = nil
        } else if let w = slot {
            try? group.change(w, to: interest)
        } else {
            slot = watch(fd, interest, as: role)
            // A regular file cannot be watched (EPERM): standard input from a file gives no input.
            if slot == nil, case .io(let id) = role, interest.contains(.readable) { ports[id].inputClosed = true }
        }
    }

    @discardableResult
    private func watch(_ fd: Int32, _ interest: Readiness, as role: Role) -> Watch? {
        guard let w = try? group.watch(fd, for: interest) else { return nil }
        roles[w] = role
        return w
    }

    private func unwatch(_ w: Watch) {
        group.unwatch(w)
        roles[w] = nil
    }

    // MARK: Control queues

    /// Handles the driver's control messages (control transmit queue).
    private func receiveControl(_ queue: Virtqueue) -> ProcessResult {
        var header = [UInt8](repeating: 0, count: VirtioConsole.controlHeaderSize)
        while let chain = queue.nextChain() {
            var reader = chain.reader()
            let n = header.withUnsafeMutableBytes { reader.read(into: $0) }
            queue.complete(chain, written: 0)
            guard multiport else {
                device.report("control message on a device without MULTIPORT negotiated: ignored")
                continue
            }
            guard n == VirtioConsole.controlHeaderSize, let message = ConsoleControlMessage(bytes: header) else {
                device.report("control message of \(chain.readableLength) bytes: it needs \(VirtioConsole.controlHeaderSize)")
                continue
            }
            handleControl(message)
        }
        return .done
    }

    private func handleControl(_ message: ConsoleControlMessage) {
        guard let event = VirtioConsole.Event(rawValue: message.event) else {
            device.report("control message with unknown event \(message.event) for port \(message.id)")
            return
        }
        if event == .deviceReady {
            guard message.value == 1 else { return device.report("the driver failed to set up the console (DEVICE_READY 0)") }
            for port in ports where !port.added {
                port.added = true
                send(ConsoleControlMessage(id: UInt32(port.id), event: .deviceAdd, value: 1))
            }
            return
        }
        guard message.id < UInt32(ports.count), ports[Int(message.id)].added else {
            return device.report("\(event) for port \(message.id), which the device did not add")
        }
        let port = ports[Int(message.id)]
        switch event {
        case .portReady:
            guard message.value == 1 else { return device.report("the driver failed to add port \(port.id) (PORT_READY 0)") }
            guard !port.ready else { return }
            port.ready = true
            if port.isConsole {
                send(ConsoleControlMessage(id: 0, event: .consolePort, value: 1))
                let size = device.currentSize
                send(.resize(id: 0, cols: size.cols, rows: size.rows))
            }
            if !port.name.isEmpty { send(.name(id: UInt32(port.id), port.name)) }
            if port.endpoint.hasPeer { reportOpen(port, true) }
        case .portOpen:
            guard message.value <= 1 else { return device.report("PORT_OPEN \(message.value) for port \(port.id): 0 or 1") }
            port.guestOpen = message.value == 1
            if port.guestOpen { group.wakeQueue(VirtioConsole.receiveQueue(port: port.id)) }
        default:
            device.report("\(event) for port \(port.id) goes from the device to the driver, not back")
        }
    }

    private func reportOpen(_ port: PortState, _ open: Bool) {
        port.closePending = false
        guard multiport, port.ready, port.reportedOpen != open else { return }
        port.reportedOpen = open
        send(ConsoleControlMessage(id: UInt32(port.id), event: .portOpen, value: open ? 1 : 0))
    }

    private func send(_ message: ConsoleControlMessage) {
        guard state.controlOut.count < Self.controlBacklogLimit else {
            return device.report("\(Self.controlBacklogLimit) control messages wait for the driver's buffers: \(message.event) dropped")
        }
        state.controlOut.append(message)
        group.wakeQueue(VirtioConsole.controlReceiveQueue)
    }

    /// Moves waiting control messages into the driver's control receive buffers, one per buffer.
    private func deliverControl(_ queue: Virtqueue) -> ProcessResult {
        var sent = 0
        while sent < state.controlOut.count, let chain = queue.nextChain() {
            let bytes = state.controlOut[sent].bytes
            sent += 1
            guard chain.writableLength >= bytes.count else {
                device.report("control buffer of \(chain.writableLength) bytes cannot hold a \(bytes.count)-byte message: dropped")
                queue.complete(chain, written: 0)
                continue
            }
            var writer = chain.writer()
            let n = bytes.withUnsafeBytes { writer.write($0) }
            queue.complete(chain, written: n)
        }
        state.controlOut.removeFirst(sent)
        return .blocked
    }

    // MARK: Size, resets, emergency writes

    private func apply(_ size: ConsoleSize) {
        guard device.setSize(size) else { return }
        if multiport {
            if ports[0].ready { send(.resize(id: 0, cols: size.cols, rows: size.rows)) }
        } else {
            device.signalConfigChange()
        }
    }

    private func takeRequests() {
        if let size = device.takeRequestedSize() { apply(size) }
        let emergency = device.takeEmergencyBytes()
        if !emergency.isEmpty {
            let console = ports[0]
            if console.toHost.free < emergency.count { console.toHost.consume(min(console.toHost.count, emergency.count)) }
            _ = emergency.withUnsafeBytes { console.toHost.append($0) }
            flush(console)
        }
    }

    private func applyResets() {
        let resets = device.resetCount
        guard resets != state.resetsSeen else { return }
        state.resetsSeen = resets
        state.controlOut.removeAll()
        for port in ports { port.resetGuestSide() }
        if !multiport { ports[0].guestOpen = true }
    }

    private func acceptResizeClient() {
        guard let control = state.resizeControl else { return }
        while let client = control.accept() {
            client.watch = watch(client.socket.rawValue, .readable, as: .resizeClient(client))
            control.clients.append(client)
        }
    }

    private func serviceResizeClient(_ client: ResizeControl.Client) {
        guard let control = state.resizeControl else { return }
        guard let lines = ResizeControl.read(client) else {
            if let w = client.watch { unwatch(w) }
            control.clients.removeAll { $0 === client }
            return
        }
        for line in lines {
            switch ResizeControl.parse(line) {
            case let .resize(size):
                apply(size)
                ResizeControl.reply(client, "ok")
            case let .invalid(why):
                device.report("resize request: \(why)")
                ResizeControl.reply(client, "error: \(why)")
            }
        }
    }
}

extension PortBackendKind {
    var isPty: Bool { if case .pty = self { true } else { false } }
}
