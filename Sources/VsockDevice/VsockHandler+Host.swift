import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The host sockets' side of the handler: readiness, bytes to the guest, bytes to the host, and the
/// host programs' CONNECT lines.
extension VsockHandler {
    enum SendResult { case sent, noBuffer, nothing }

    func hostReady(_ connection: VsockConnection, _ readiness: Readiness, _ group: QueueGroup) {
        if readiness.contains(.hangUp) { connection.hungUp = true }
        if connection.state != .established {
            // Waiting for an answer: a host program (or peer guest) that leaves refuses.
            if connection.hungUp { reset(connection, reason: "peer left before the connection was accepted") }
            else { updateInterest(connection) }
            return
        }
        if readiness.contains(.writable) || (connection.hungUp && connection.hasBytesForHost) {
            flushToHost(connection)
            guard connection.socket != nil else { return }
        }
        if readiness.contains(.readable) || connection.hungUp { scheduleForGuest(connection) }
        updateInterest(connection)
    }

    /// Writes one packet of host bytes (or the host's end of file) into the next receive buffer.
    func sendToGuest(_ connection: VsockConnection, _ queue: Virtqueue) -> SendResult {
        guard let fd = connection.socket?.rawValue else { return .nothing }
        if connection.type == .seqpacket {
            if connection.toGuest.isEmpty {
                guard connection.wantsHostRead else { return .nothing }
                guard readMessage(connection, fd) else { return .nothing }
            }
            return sendMessagePiece(connection, queue)
        }
        guard connection.wantsHostRead else { return .nothing }
        var byte: UInt8 = 0
        let peeked = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if peeked <= 0 {
            hostReadFailed(connection, result: peeked)
            return .nothing
        }
        guard let chain = queue.nextChain() else { return .noBuffer }
        let limit = min(chain.writableLength - VirtioVsock.headerSize, Int(connection.peerCredit), VirtioVsock.maxPacketPayload)
        var header = VsockHeader(srcCID: connection.key.peerCID, dstCID: guestCID, srcPort: connection.key.peerPort,
                                 dstPort: connection.key.guestPort, type: .stream, op: .rw)
        var writer = chain.writer()
        guard limit > 0, header.write(to: &writer) else {
            queue.complete(chain, written: 0)
            return .sent
        }
        var last = 0
        let n = writer.fill(upTo: limit) { buffer in
            last = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            return last
        }
        if n == 0 {
            // Nothing after all (a race with the peek): the buffer carries a credit update instead.
            header.op = VirtioVsock.Op.creditUpdate.rawValue
        }
        header.length = UInt32(n)
        stampCredit(&header, connection)
        var rewriter = chain.writer()
        header.write(to: &rewriter)
        queue.complete(chain, written: VirtioVsock.headerSize + n)
        connection.txCnt &+= UInt32(n)
        if n == 0 || last <= 0 && n < limit { hostReadFailed(connection, result: last) }
        return .sent
    }

    /// Reads one SEQPACKET message from the host into `toGuest`; false when none (or the socket ended).
    private func readMessage(_ connection: VsockConnection, _ fd: Int32) -> Bool {
        var result = 0
        var truncated = false
        connection.toGuest.withFreeSpace { space in
            result = recv(fd, space.baseAddress, space.count, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
            truncated = result > space.count
            return truncated ? 0 : max(0, result)
        }
        if truncated {
            reset(connection, reason: "host message of \(result) bytes is larger than \(VirtioVsock.maxPacketPayload)")
            return false
        }
        guard result > 0 else {
            hostReadFailed(connection, result: result)
            return false
        }
        return true
    }

    /// Sends the next piece of the message in `toGuest`: EOM (and EOR: a unix SEQPACKET message is a
    /// whole record) on its last piece.
    private func sendMessagePiece(_ connection: VsockConnection, _ queue: Virtqueue) -> SendResult {
        guard let chain = queue.nextChain() else { return .noBuffer }
        let remaining = connection.toGuest.count
        let n = min(chain.writableLength - VirtioVsock.headerSize, Int(connection.peerCredit), remaining)
        guard n > 0 else {
            queue.complete(chain, written: 0)
            return .sent
        }
        var header = VsockHeader(srcCID: connection.key.peerCID, dstCID: guestCID, srcPort: connection.key.peerPort,
                                 dstPort: connection.key.guestPort, type: .seqpacket, op: .rw,
                                 flags: n == remaining ? VirtioVsock.seqEOM | VirtioVsock.seqEOR : 0, length: UInt32(n))
        stampCredit(&header, connection)
        var writer = chain.writer()
        header.write(to: &writer)
        _ = connection.toGuest.drain(into: &writer, upTo: n)
        queue.complete(chain, written: writer.written)
        connection.txCnt &+= UInt32(n)
        return .sent
    }

    /// A read found no bytes: nothing yet (EAGAIN), the end of file, or an error (reset).
    private func hostReadFailed(_ connection: VsockConnection, result: Int) {
        if result < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return }
            reset(connection, reason: "host read: \(SystemError.describe(errno))")
            return
        }
        hostEnded(connection)
    }

    /// The host side will send no more: SHUTDOWN(SEND) to the guest, and the connection ends if the
    /// guest is done sending too.
    func hostEnded(_ connection: VsockConnection) {
        connection.hostEnded = true
        if !connection.shutdownSent {
            connection.shutdownSent = true
            queueControl(.shutdown, connection, flags: VirtioVsock.shutdownSend)
        }
        finishIfDone(connection)
        if connection.socket != nil { updateInterest(connection) }
    }

    /// Both sides are done: the host socket is closed and the guest gets RST (what a Linux peer does
    /// after SHUTDOWN in both directions).
    func finishIfDone(_ connection: VsockConnection) {
        let guestDone = connection.guestShutdown & VirtioVsock.shutdownBoth == VirtioVsock.shutdownBoth
        let sendsDone = connection.guestShutdown & VirtioVsock.shutdownSend != 0 && connection.hostEnded
        if (guestDone || sendsDone) && !connection.hasBytesForHost {
            reset(connection, reason: "closed")
        }
    }

    /// Writes what waits for the host socket; a blocked socket is watched for writable, a broken one
    /// resets the connection. Announces freed credit to the guest.
    func flushToHost(_ connection: VsockConnection) {
        guard let fd = connection.socket?.rawValue else { return }
        let before = connection.toHost.count
        if connection.type == .stream {
            if connection.toHost.write(to: fd, socket: true) < 0, errno != EAGAIN, errno != EWOULDBLOCK {
                reset(connection, reason: "host write: \(SystemError.describe(errno))")
                return
            }
        } else {
            while let length = connection.messageLengths.first {
                if connection.toHost.sendRecord(length, to: fd) < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK { break }
                    reset(connection, reason: "host send: \(SystemError.describe(errno))")
                    return
                }
                connection.messageLengths.removeFirst()
            }
        }
        connection.fwdCnt &+= UInt32(before - connection.toHost.count)
        if !connection.hasBytesForHost, connection.guestShutdown & VirtioVsock.shutdownSend != 0, !connection.hostWriteShut {
            connection.hostWriteShut = true
            shutdown(fd, Int32(SHUT_WR))
        }
        finishIfDone(connection)
        guard connection.socket != nil else { return }
        if connection.fwdCnt &- connection.reportedFwdCnt >= connection.bufAlloc / 4, !connection.creditUpdateQueued {
            connection.creditUpdateQueued = true
            queueControl(.creditUpdate, connection)
        }
        updateInterest(connection)
    }

    // MARK: Host programs connecting to the guest

    func acceptClients(type: VirtioVsock.SocketType, _ group: QueueGroup) {
        guard let host = device.host, let listener = type == .stream ? host.streamListener : host.seqpacketListener else { return }
        while let socket = HostSockets.accept(listener) {
            // Programs that have not sent their line yet hold descriptors too: as many as connections.
            guard table.clients.count < device.options.maxConnections else {
                logger.warning("guest \(guestCID): \(table.clients.count) host programs wait to send CONNECT; one more refused")
                continue
            }
            let client = HostClient(socket: socket, type: type)
            guard let watch = try? group.watch(socket.rawValue, for: .readable) else { continue }
            client.watch = watch
            clientWatches[watch] = client
            table.clients.append(client)
        }
    }

    /// Reads a host program's `CONNECT <port>\n`; once whole, sends REQUEST to the guest's port. A
    /// stream is peeked first and taken only up to the newline: bytes the program sends right after
    /// the line belong to the connection.
    func readConnectLine(_ client: HostClient, _ group: QueueGroup) {
        let fd = client.socket.rawValue
        let room = HostClient.maxLine - client.line.count
        let stream = client.type == .stream
        var n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min(room, $0.count), Int32(MSG_DONTWAIT) | (stream ? Int32(MSG_PEEK) : 0)) }
        if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { return }
        if n > 0, stream {
            if let newline = scratch[0..<n].firstIndex(of: UInt8(ascii: "\n")) { n = newline + 1 }
            n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, n, Int32(MSG_DONTWAIT)) }
        }
        if n > 0 { client.line += scratch[0..<n] }
        let complete = client.line.last == UInt8(ascii: "\n") || !stream && n > 0
        guard complete || (n > 0 && client.line.count < HostClient.maxLine) else {
            dropClient(client)  // closed, failed, or a line too long
            return
        }
        guard complete else { return }
        dropClient(client)
        guard let port = HostSockets.parseConnect(client.line[...]) else {
            logger.info("guest \(guestCID): a host program sent a malformed CONNECT line")
            return
        }
        guard table.connections.count < device.options.maxConnections else {
            logger.warning("guest \(guestCID): connection limit \(device.options.maxConnections) reached, CONNECT \(port) refused")
            return
        }
        var hostPort = table.nextHostPort
        while table.connections[ConnectionKey(guestPort: port, peerCID: VirtioVsock.hostCID, peerPort: hostPort)] != nil { hostPort &+= 1 }
        table.nextHostPort = hostPort &+ 1 == 0 ? 1 << 30 : hostPort &+ 1
        let key = ConnectionKey(guestPort: port, peerCID: VirtioVsock.hostCID, peerPort: hostPort)
        let connection = VsockConnection(key: key, type: client.type, state: .connecting, socket: client.socket,
                                         bufAlloc: device.options.bufferBytes)
        table.connections[key] = connection
        updateInterest(connection)
        queueControl(.request, connection)
    }

    private func dropClient(_ client: HostClient) {
        if let watch = client.watch {
            group?.unwatch(watch)
            clientWatches[watch] = nil
        }
        client.watch = nil
        table.clients.removeAll { $0 === client }
    }

    /// Tells the host program its connection is accepted: `OK <host port>\n` (one message on SEQPACKET).
    func announceAccepted(_ connection: VsockConnection) {
        guard let fd = connection.socket?.rawValue else { return }
        let line = Array("OK \(connection.key.peerPort)\n".utf8)
        let sent = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        if sent != line.count { reset(connection, reason: "host program gone before OK") }
    }
}
