import VhostUserKit

/// The device's migration state (DEVICE_STATE): the console's size, emergency characters not yet
/// written, control messages not yet delivered, and per port the control handshake and the bytes on
/// their way each direction. Host sides are the loading daemon's own: its ports must have the same
/// names, and its buffers must hold what arrives.
extension ConsoleDevice {
    static let stateKind = "cons"
    static let stateVersion: UInt16 = 1
    /// The most control messages a state may carry (a driver sees a handful per port).
    static let maxPendingControl = 1024

    public func saveState() throws -> DeviceState? {
        var w = ByteWriter()
        let current = currentSize
        w.u16(current.cols)
        w.u16(current.rows)
        let emergency = emergency.withLock { $0 }
        w.u32(UInt32(emergency.count))
        w.append(emergency)
        try state.withLock { (state) throws in
            guard let state else { throw DeviceStateError.invalid("console: the ports are held by a running group") }
            w.u32(UInt32(state.ports.count))
            for port in state.ports {
                let name = Array(port.name.utf8)
                w.u32(UInt32(name.count))
                w.append(name)
                w.append([port.added, port.ready, port.guestOpen, port.reportedOpen, port.closePending].map { $0 ? 1 : 0 })
                for bytes in [port.toHost.contents, port.toGuest.contents] {
                    w.u32(UInt32(bytes.count))
                    w.append(bytes)
                }
            }
            w.u32(UInt32(state.controlOut.count))
            for message in state.controlOut {
                w.u32(message.id)
                w.u16(message.event)
                w.u16(message.value)
                w.u32(UInt32(message.payload.count))
                w.append(message.payload)
            }
        }
        return DeviceState(kind: Self.stateKind, version: Self.stateVersion, payload: w.bytes)
    }

    private struct SavedPort {
        var flags: [Bool]
        var toHost: [UInt8]
        var toGuest: [UInt8]
    }

    public func loadState(_ saved: DeviceState) throws {
        try saved.expect(kind: Self.stateKind, versions: Self.stateVersion...Self.stateVersion)
        var r = DeviceStateReader(saved)
        let size = ConsoleSize(cols: try r.u16(), rows: try r.u16())
        let emergency = try r.bytes(try r.count(max: Self.emergencyLimit))
        try state.withLock { (state) throws in
            guard let state else { throw DeviceStateError.invalid("console: the ports are held by a running group") }
            guard try r.count(max: 64) == state.ports.count else {
                throw DeviceStateError.invalid("console: the state has another number of ports (this console has \(state.ports.count))")
            }
            var ports: [SavedPort] = []
            for port in state.ports {
                let name = String(decoding: try r.bytes(try r.count(max: VirtioConsole.maxNameBytes)), as: UTF8.self)
                guard name == port.name else { throw DeviceStateError.invalid("console: port \(port.id) is \"\(name)\" in the state, \"\(port.name)\" here") }
                let flags = try (0..<5).map { _ throws(DeviceStateError) in try r.bool() }
                let toHost = try r.bytes(try r.count(max: port.toHost.capacity))
                let toGuest = try r.bytes(try r.count(max: port.toGuest.capacity))
                ports.append(SavedPort(flags: flags, toHost: toHost, toGuest: toGuest))
            }
            var control: [ConsoleControlMessage] = []
            for _ in 0..<(try r.count(max: Self.maxPendingControl)) {
                let id = try r.u32(), event = try r.u16(), value = try r.u16()
                let payload = try r.bytes(try r.count(max: VirtioConsole.maxNameBytes + 1))
                guard id < UInt32(maxPorts), VirtioConsole.Event(rawValue: event) != nil else {
                    throw DeviceStateError.invalid("console: control message \(event) for port \(id)")
                }
                control.append(ConsoleControlMessage(id: id, rawEvent: event, value: value, payload: payload))
            }
            try r.finish()
            // All checked: apply.
            for (port, saved) in zip(state.ports, ports) {
                (port.added, port.ready, port.guestOpen, port.reportedOpen, port.closePending) =
                    (saved.flags[0], saved.flags[1], saved.flags[2], saved.flags[3], saved.flags[4])
                port.toHost.replace(with: saved.toHost)
                port.toGuest.replace(with: saved.toGuest)
            }
            state.controlOut = control
            state.resetsSeen = resetCount
        }
        _ = setSize(size)
        self.emergency.withLock { $0 = emergency }
    }
}
