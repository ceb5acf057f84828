import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Serves a guest's rx, tx and event queues on one worker: packets from the guest (tx) drive the
/// connection table; host sockets, watched in the group's epoll set, fill the guest's receive buffers
/// (rx) as its credit allows; the event queue carries the transport reset.
///
/// Packets for the guest wait in two places: `control`, headers without payload (RESPONSE, RST,
/// SHUTDOWN, CREDIT_UPDATE, REQUEST), sent first; and `readyForGuest`, connections whose host socket
/// may have bytes, served round-robin one packet at a time. When `control` is long (the guest gives no
/// receive buffers) the tx queue is not read until it drains: no unbounded growth.
final class VsockHandler: GroupHandler {
    struct Outgoing {
        var header: VsockHeader
        /// The connection whose credit fields are filled in when the packet is written.
        var connection: VsockConnection?
    }

    let device: VsockDevice
    let seqpacket: Bool
    let guestCID: UInt64
    var logger: Logger { device.logger }
    var table = VsockTable()
    var control: [Outgoing] = []
    var controlHead = 0
    var readyForGuest: [VsockConnection] = []
    var readyHead = 0
    var watches: [Watch: VsockConnection] = [:]
    var clientWatches: [Watch: HostClient] = [:]
    var listenerWatches: [Watch: VirtioVsock.SocketType] = [:]
    /// tx was left because `control` was full.
    var transmitBlocked = false
    /// Malformed packets from the guest (logged once per 1000).
    var malformed = 0
    /// Scratch for a peeked byte and CONNECT lines.
    var scratch = [UInt8](repeating: 0, count: 64)
    var group: QueueGroup?

    static let maxControl = 4096

    init(device: VsockDevice, seqpacket: Bool) {
        self.device = device
        self.seqpacket = seqpacket
        guestCID = device.guestCID
        control.reserveCapacity(256)
    }

    // MARK: Group life

    func start(_ group: QueueGroup) {
        self.group = group
        table = device.table.withLock { t in defer { t = VsockTable() }; return t }
        // Keep the table's flags with the device's lock while we run (a reset() comes only when stopped).
        if let host = device.host {
            if let fd = host.streamListener, let w = try? group.watch(fd.rawValue, for: .readable) { listenerWatches[w] = .stream }
            if let fd = host.seqpacketListener, seqpacket, let w = try? group.watch(fd.rawValue, for: .readable) { listenerWatches[w] = .seqpacket }
        }
        for client in table.clients { client.watch = try? group.watch(client.socket.rawValue, for: .readable); if let w = client.watch { clientWatches[w] = client } }
        for connection in table.connections.values {
            connection.watch = nil
            connection.interest = []
            connection.queuedForGuest = false
            updateInterest(connection)
            scheduleForGuest(connection)
        }
        control = table.pendingControl
        table.pendingControl = []
        for (key, type) in table.staleConnections { queueReset(key: key, type: type) }
        table.staleConnections.removeAll()
        device.member?.waker.withLock { $0 = group.waker }
        receiveInbox()
        group.wakeQueue(VirtioVsock.eventQueue)
        group.wakeQueue(VirtioVsock.receiveQueue)
    }

    func stop(_ group: QueueGroup) {
        device.member?.waker.withLock { $0 = nil }
        for connection in table.connections.values { connection.watch = nil; connection.interest = [] }
        for client in table.clients { client.watch = nil }
        watches.removeAll()
        clientWatches.removeAll()
        listenerWatches.removeAll()
        // Packets not yet delivered wait for the next group of the same front-end (a reset() drops them).
        table.pendingControl = Array(control[controlHead...])
        device.table.withLock { $0 = table }
        table = VsockTable()
        control = []
        controlHead = 0
        readyForGuest.removeAll()
        readyHead = 0
        self.group = nil
    }

    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        defer { device.openConnections.store(table.connections.count, ordering: .relaxed) }
        switch queue.index {
        case VirtioVsock.transmitQueue: return transmit(queue, group)
        case VirtioVsock.receiveQueue: return receive(queue, group)
        default: return deliverEvents(queue)
        }
    }

    func handle(_ event: GroupEvent, in group: QueueGroup) {
        switch event {
        case let .ready(watch, readiness):
            if let connection = watches[watch] {
                hostReady(connection, readiness, group)
            } else if let client = clientWatches[watch] {
                readConnectLine(client, group)
            } else if let type = listenerWatches[watch] {
                acceptClients(type: type, group)
            }
        case .timer:
            break
        case .wake:
            receiveInbox()
        }
        if controlHead < control.count || readyHead < readyForGuest.count { group.wakeQueue(VirtioVsock.receiveQueue) }
        device.openConnections.store(table.connections.count, ordering: .relaxed)
    }

    // MARK: Event queue

    /// Writes the transport reset into an event buffer when one is owed.
    /// (The guest keeps event buffers available: without an event to write, the queue waits for a
    /// wake-up rather than counting as busy.)
    private func deliverEvents(_ queue: Virtqueue) -> ProcessResult {
        guard table.transportResetDue else { return .blocked }
        guard let chain = queue.nextChain() else { return .blocked }
        var writer = chain.writer()
        writer.write(VirtioVsock.eventTransportReset)
        queue.complete(chain, written: writer.written)
        table.transportResetDue = false
        logger.info("guest \(guestCID): transport reset sent")
        return .blocked
    }

    // MARK: Receive queue (to the guest)

    private func receive(_ queue: Virtqueue, _ group: QueueGroup) -> ProcessResult {
        while true {
            if controlHead < control.count {
                guard let chain = queue.nextChain() else { return .blocked }
                var outgoing = control[controlHead]
                controlHead += 1
                if let connection = outgoing.connection { stampCredit(&outgoing.header, connection) }
                var writer = chain.writer()
                outgoing.header.write(to: &writer)
                queue.complete(chain, written: writer.written)
                continue
            }
            if controlHead > 0 {
                control.removeAll(keepingCapacity: true)
                controlHead = 0
                if transmitBlocked {
                    transmitBlocked = false
                    group.wakeQueue(VirtioVsock.transmitQueue)
                }
            }
            guard readyHead < readyForGuest.count else {
                // Nothing to send: the receive buffers stay available until a host socket, a packet
                // or a peer wakes this queue.
                readyForGuest.removeAll(keepingCapacity: true)
                readyHead = 0
                return .blocked
            }
            let connection = readyForGuest[readyHead]
            readyHead += 1
            connection.queuedForGuest = false
            guard connection.socket != nil, connection.peerCredit > 0 else {
                updateInterest(connection)
                continue
            }
            switch sendToGuest(connection, queue) {
            case .sent:
                scheduleForGuest(connection)
            case .noBuffer:
                // Put it back at the front: the next receive buffer is its.
                readyHead -= 1
                connection.queuedForGuest = true
                return .blocked
            case .nothing:
                updateInterest(connection)
            }
            if readyHead > 1024, readyHead * 2 > readyForGuest.count {
                readyForGuest.removeFirst(readyHead)
                readyHead = 0
            }
        }
    }

    /// Puts a connection in the round-robin for the guest when the host side may have bytes and the
    /// guest has credit.
    func scheduleForGuest(_ connection: VsockConnection) {
        guard !connection.queuedForGuest, connection.socket != nil, connection.state == .established,
              connection.peerCredit > 0, connection.hasBytesForGuest else { return }
        connection.queuedForGuest = true
        readyForGuest.append(connection)
        group?.wakeQueue(VirtioVsock.receiveQueue)
    }

    /// Fills the credit fields of a packet for the guest as they are now.
    func stampCredit(_ header: inout VsockHeader, _ connection: VsockConnection) {
        header.bufAlloc = connection.bufAlloc
        header.fwdCnt = connection.fwdCnt
        connection.reportedFwdCnt = connection.fwdCnt
        if header.op == VirtioVsock.Op.creditUpdate.rawValue { connection.creditUpdateQueued = false }
    }

    /// Queues a header-only packet for the guest from `connection`'s peer.
    func queueControl(_ op: VirtioVsock.Op, _ connection: VsockConnection, flags: UInt32 = 0) {
        let header = VsockHeader(srcCID: connection.key.peerCID, dstCID: guestCID, srcPort: connection.key.peerPort,
                                 dstPort: connection.key.guestPort, type: connection.type, op: op, flags: flags)
        control.append(Outgoing(header: header, connection: connection))
        group?.wakeQueue(VirtioVsock.receiveQueue)
    }

    /// Queues RST for a connection the device does not have (any more).
    func queueReset(key: ConnectionKey, type: VirtioVsock.SocketType) {
        let header = VsockHeader(srcCID: key.peerCID, dstCID: guestCID, srcPort: key.peerPort, dstPort: key.guestPort,
                                 type: type, op: .rst)
        control.append(Outgoing(header: header, connection: nil))
        group?.wakeQueue(VirtioVsock.receiveQueue)
    }

    /// Closes a connection on the host side and tells the guest (RST).
    func reset(_ connection: VsockConnection, reason: String) {
        logger.debug("guest \(guestCID) port \(connection.key.guestPort) <-> \(connection.key.peerCID):\(connection.key.peerPort): reset (\(reason))")
        close(connection)
        queueReset(key: connection.key, type: connection.type)
    }

    /// Forgets a connection and closes its host socket (the guest is told separately, if at all).
    func close(_ connection: VsockConnection) {
        if let watch = connection.watch {
            group?.unwatch(watch)
            watches[watch] = nil
        }
        connection.watch = nil
        connection.socket = nil
        if table.connections[connection.key] === connection { table.connections[connection.key] = nil }
    }

    /// Watches the host socket for what the connection can use now: readable while the guest may take
    /// bytes and none are scheduled, writable while guest bytes wait for the socket.
    func updateInterest(_ connection: VsockConnection) {
        guard let socket = connection.socket, let group else { return }
        var wanted: Readiness = []
        if connection.wantsHostRead && !connection.queuedForGuest { wanted.insert(.readable) }
        if connection.hasBytesForHost { wanted.insert(.writable) }
        if let watch = connection.watch {
            if wanted.isEmpty && connection.hungUp {
                // Level-triggered hang-ups would be reported again and again: stop watching until
                // the connection wants the socket again (and then meets its end).
                group.unwatch(watch)
                watches[watch] = nil
                connection.watch = nil
            } else if wanted != connection.interest {
                try? group.change(watch, to: wanted)
            }
        } else if !wanted.isEmpty || !connection.hungUp {
            guard let watch = try? group.watch(socket.rawValue, for: wanted) else { return }
            connection.watch = watch
            watches[watch] = connection
        }
        connection.interest = wanted
    }
}
