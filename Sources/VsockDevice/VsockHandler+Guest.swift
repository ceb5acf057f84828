import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The guest's packets (tx queue): every header checked before anything changes; a packet that breaks
/// a rule gets RST (never in answer to an RST) and the queue goes on.
extension VsockHandler {
    func transmit(_ queue: Virtqueue, _ group: QueueGroup) -> ProcessResult {
        while true {
            if control.count - controlHead >= Self.maxControl {
                // The guest takes no receive buffers: read no more packets until it does.
                transmitBlocked = true
                return .blocked
            }
            guard let chain = queue.nextChain() else { return .done }
            var reader = chain.reader()
            if let header = VsockHeader(reading: &reader) {
                handlePacket(header, payload: &reader, available: chain.readableLength - VirtioVsock.headerSize)
            } else {
                noteMalformed("a packet of \(chain.readableLength) bytes, shorter than its header")
            }
            queue.complete(chain, written: 0)
        }
    }

    private func noteMalformed(_ what: String) {
        if malformed % 1000 == 0 { logger.warning("guest \(guestCID): \(what) (malformed packets so far: \(malformed + 1))") }
        malformed += 1
    }

    /// Answers a packet that breaks a rule with RST (unless it is one).
    private func refuse(_ header: VsockHeader, _ why: String) {
        noteMalformed(why)
        guard header.op != VirtioVsock.Op.rst.rawValue else { return }
        queueReset(key: ConnectionKey(guestPort: header.srcPort, peerCID: header.dstCID, peerPort: header.dstPort),
                   type: header.socketType ?? .stream)
    }

    func handlePacket(_ header: VsockHeader, payload: inout ChainReader, available: Int) {
        guard header.srcCID == guestCID else { return refuse(header, "source CID \(header.srcCID), not the guest's \(guestCID)") }
        guard let type = header.socketType, type == .stream || type == .seqpacket && seqpacket else {
            return refuse(header, "socket type \(header.type)")
        }
        guard let op = header.operation else { return refuse(header, "operation \(header.op)") }
        guard Int(header.length) <= available, Int(header.length) <= VirtioVsock.maxPacketPayload,
              op == .rw || header.length == 0 else {
            return refuse(header, "length \(header.length) with \(available) payload bytes (op \(header.op))")
        }
        let key = ConnectionKey(guestPort: header.srcPort, peerCID: header.dstCID, peerPort: header.dstPort)
        guard let connection = table.connections[key] else {
            switch op {
            case .request: return connect(key, type: type, header)
            case .rst: return
            default: return refuse(header, "op \(op) for no connection (port \(header.srcPort) to \(header.dstCID):\(header.dstPort))")
            }
        }
        guard connection.type == type else { return resetAndRefuse(connection, header, "type changed on a connection") }
        connection.noteCredit(header)
        switch op {
        case .request:
            // The guest reuses a port it considers closed: the old connection is gone.
            close(connection)
            connect(key, type: type, header)
        case .response:
            guard connection.state == .connecting else { return resetAndRefuse(connection, header, "RESPONSE on an open connection") }
            connection.state = .established
            if connection.key.peerCID == VirtioVsock.hostCID { announceAccepted(connection) }
            else { _ = device.hub?.send(.accepted(ConnectionKey(guestPort: key.peerPort, peerCID: guestCID, peerPort: key.guestPort)), to: key.peerCID) }
            guard connection.socket != nil else { return }
            scheduleForGuest(connection)
            updateInterest(connection)
        case .rst:
            close(connection)
        case .shutdown:
            connection.guestShutdown |= header.flags & VirtioVsock.shutdownBoth
            if connection.guestShutdown & VirtioVsock.shutdownSend != 0 { flushToHost(connection) } else { finishIfDone(connection) }
            if connection.socket != nil { updateInterest(connection) }
        case .rw:
            guard connection.state == .established else { return resetAndRefuse(connection, header, "data before the connection was accepted") }
            receiveData(connection, header, &payload)
        case .creditUpdate:
            scheduleForGuest(connection)
            updateInterest(connection)
        case .creditRequest:
            if !connection.creditUpdateQueued {
                connection.creditUpdateQueued = true
                queueControl(.creditUpdate, connection)
            }
            scheduleForGuest(connection)
        }
    }

    private func resetAndRefuse(_ connection: VsockConnection, _ header: VsockHeader, _ why: String) {
        noteMalformed(why)
        reset(connection, reason: why)
    }

    /// The guest's REQUEST: to the host's listener `PATH_P`, or to another guest of the hub.
    private func connect(_ key: ConnectionKey, type: VirtioVsock.SocketType, _ header: VsockHeader) {
        guard table.connections.count < device.options.maxConnections else {
            logger.warning("guest \(guestCID): connection limit \(device.options.maxConnections) reached")
            return queueReset(key: key, type: type)
        }
        if key.peerCID == VirtioVsock.hostCID {
            guard let host = device.host else { return queueReset(key: key, type: type) }
            switch host.connect(port: key.peerPort, type: type) {
            case let .success(socket):
                let connection = VsockConnection(key: key, type: type, state: .established, socket: socket, bufAlloc: device.options.bufferBytes)
                connection.noteCredit(header)
                table.connections[key] = connection
                queueControl(.response, connection)
                updateInterest(connection)
            case let .failure(error):
                logger.debug("guest \(guestCID) port \(key.guestPort) to host port \(key.peerPort): \(error)")
                queueReset(key: key, type: type)
            }
            return
        }
        // Another guest of the group (never this one: it reaches itself through its own loopback).
        guard let hub = device.hub, key.peerCID != guestCID, hub.contains(key.peerCID) else { return queueReset(key: key, type: type) }
        var pair: (Int32, Int32) = (-1, -1)
        let socketType = type == .stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_SEQPACKET.rawValue)
        let made = withUnsafeMutableBytes(of: &pair) { socketpair(AF_UNIX, socketType | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, $0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        guard made == 0 else { return queueReset(key: key, type: type) }
        let mine = OwnedDescriptor(pair.0), theirs = OwnedDescriptor(pair.1)
        guard hub.send(.connect(socket: theirs, from: guestCID, fromPort: key.guestPort, toPort: key.peerPort, type: type), to: key.peerCID) else {
            return queueReset(key: key, type: type)
        }
        let connection = VsockConnection(key: key, type: type, state: .awaitingPeer, socket: mine, bufAlloc: device.options.bufferBytes)
        connection.noteCredit(header)
        table.connections[key] = connection
        updateInterest(connection)
    }

    /// An RW packet's payload into the connection's bytes for the host (within the credit given).
    private func receiveData(_ connection: VsockConnection, _ header: VsockHeader, _ payload: inout ChainReader) {
        let length = Int(header.length)
        guard connection.hostWindowHolds(length) else {
            let free = Int(connection.bufAlloc) - connection.toHost.count
            return resetAndRefuse(connection, header, "\(length) bytes beyond the credit given (\(free) free)")
        }
        guard connection.guestShutdown & VirtioVsock.shutdownSend == 0 else {
            return resetAndRefuse(connection, header, "data after SHUTDOWN(SEND)")
        }
        var sent = 0
        if connection.type == .stream, connection.toHost.isEmpty, let fd = connection.socket?.rawValue {
            // Nothing queued before it: straight from guest memory to the socket, the rest queued.
            sent = payload.drain(upTo: length) { piece in max(0, send(fd, piece.baseAddress, piece.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))) }
            connection.fwdCnt &+= UInt32(sent)
        }
        connection.reserveForHost(length - sent)
        _ = connection.toHost.append(from: &payload, upTo: length - sent)
        if connection.type == .seqpacket {
            connection.partialMessage += length
            if header.flags & VirtioVsock.seqEOM != 0 {
                connection.messageLengths.append(connection.partialMessage)
                connection.partialMessage = 0
            }
        }
        flushToHost(connection)
    }

    // MARK: Other guests

    /// Takes what other guests' handlers sent: connections for this guest, and acceptances.
    func receiveInbox() {
        guard let member = device.member else { return }
        let messages = member.inbox.withLock { inbox in defer { inbox.removeAll() }; return inbox }
        for message in messages {
            switch message {
            case let .connect(socket, from, fromPort, toPort, type):
                let key = ConnectionKey(guestPort: toPort, peerCID: from, peerPort: fromPort)
                guard table.connections[key] == nil, table.connections.count < device.options.maxConnections,
                      type == .stream || seqpacket else { continue }  // the socket closes: the peer is refused
                let connection = VsockConnection(key: key, type: type, state: .connecting, socket: socket, bufAlloc: device.options.bufferBytes)
                table.connections[key] = connection
                updateInterest(connection)
                queueControl(.request, connection)
            case let .accepted(key):
                guard let connection = table.connections[key], connection.state == .awaitingPeer else { continue }
                connection.state = .established
                queueControl(.response, connection)
                scheduleForGuest(connection)
                updateInterest(connection)
            }
        }
    }
}
