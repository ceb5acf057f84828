import VhostUserKit

/// The device state that can move with a guest (DEVICE_STATE): the guest CID, the next host port, and
/// the connection table (ports, peer, type, state, both credit windows, shutdown flags).
///
/// The host sockets cannot move, so the loading daemon does not pretend they did: every connection of
/// a loaded state is reset towards the guest when its queues run (RST, after the transport reset a
/// migrated guest gets anyway), so guest programs see their sockets fail at once instead of hanging.
/// Bytes still buffered are not part of the state: they belong to connections that are reset.
extension VsockDevice {
    static let stateKind = "vsck"
    static let stateVersion: UInt16 = 1

    public func saveState() throws -> DeviceState? {
        table.withLock { table in
            var w = ByteWriter()
            w.u64(guestCID)
            w.u32(table.nextHostPort)
            let entries = table.connections.values.sorted { ($0.key.guestPort, $0.key.peerCID, $0.key.peerPort) < ($1.key.guestPort, $1.key.peerCID, $1.key.peerPort) }
            w.u32(UInt32(entries.count + table.staleConnections.count))
            for c in entries {
                Self.write(key: c.key, type: c.type, to: &w)
                w.u8(c.state.rawValue)
                w.u32(c.bufAlloc); w.u32(c.fwdCnt)
                w.u32(c.peerBufAlloc); w.u32(c.peerFwdCnt); w.u32(c.txCnt)
                w.u8(UInt8(c.guestShutdown))
            }
            for (key, type) in table.staleConnections.sorted(by: { $0.key.guestPort < $1.key.guestPort }) {
                Self.write(key: key, type: type, to: &w)
                w.u8(0); w.zeroes(20); w.u8(0)
            }
            return DeviceState(kind: Self.stateKind, version: Self.stateVersion, payload: w.bytes)
        }
    }

    private static func write(key: ConnectionKey, type: VirtioVsock.SocketType, to w: inout ByteWriter) {
        w.u32(key.guestPort); w.u64(key.peerCID); w.u32(key.peerPort); w.u16(type.rawValue)
    }

    public func loadState(_ state: DeviceState) throws {
        try state.expect(kind: Self.stateKind, versions: 1...Self.stateVersion)
        var r = DeviceStateReader(state)
        let cid = try r.u64()
        guard cid == guestCID else { throw DeviceStateError.invalid("state of guest CID \(cid), this device serves \(guestCID)") }
        let nextPort = try r.u32()
        let count = try r.count(max: options.maxConnections)
        var stale: [ConnectionKey: VirtioVsock.SocketType] = [:]
        for _ in 0..<count {
            let key = ConnectionKey(guestPort: try r.u32(), peerCID: try r.u64(), peerPort: try r.u32())
            guard let type = VirtioVsock.SocketType(rawValue: try r.u16()) else { throw DeviceStateError.invalid("socket type") }
            let stateByte = try r.u8()
            guard stateByte <= 3 else { throw DeviceStateError.invalid("connection state \(stateByte)") }
            _ = try r.bytes(20)
            guard try r.u8() <= 3 else { throw DeviceStateError.invalid("shutdown flags") }
            guard key.peerCID == VirtioVsock.hostCID || VirtioVsock.isValidGuestCID(key.peerCID), key.peerCID != guestCID else {
                throw DeviceStateError.invalid("peer CID \(key.peerCID)")
            }
            guard stale.updateValue(type, forKey: key) == nil else { throw DeviceStateError.invalid("connection listed twice") }
        }
        try r.finish()
        table.withLock { table in
            table.closeAll()
            table.staleConnections = stale
            table.nextHostPort = max(nextPort, 1 << 30)
            table.transportResetDue = true
        }
    }
}
