import VhostUserKit

/// The device's migration state (DEVICE_STATE): per line its direction, output value, interrupt
/// trigger and latched edge. Held eventq buffers are not part of it: they go back INVALID when the
/// queues stop and the driver queues them again. Lines the host keeps are recorded as such and must
/// be kept on the loading side too.
extension GPIODevice {
    static let stateKind = "gpio"
    static let stateVersion: UInt16 = 1
    /// The direction byte of a line the host keeps (no state of the driver's).
    static let busyLine: UInt8 = 0xff

    struct LineState: Equatable {
        var direction: UInt8
        var output: Bool
        var trigger: IRQTrigger
        var latched: Bool
    }

    public func saveState() throws -> DeviceState? {
        try state.withLock { (state) throws -> DeviceState in
            guard let state else { throw DeviceStateError.invalid("gpio: the lines' state is held by a running group") }
            var w = ByteWriter()
            w.u32(UInt32(lineCount))
            for line in 0..<lineCount {
                let trigger = state.interrupts.triggers[line], latched = state.interrupts.latches[line]
                do {
                    let direction = try state.chip.direction(of: line)
                    let output = direction == .output ? try state.chip.value(of: line) : false
                    w.append([direction.rawValue, output ? 1 : 0, trigger.rawValue, latched ? 1 : 0])
                } catch GPIOChipError.lineBusy {
                    w.append([Self.busyLine, 0, IRQTrigger.none.rawValue, 0])
                }
            }
            return DeviceState(kind: Self.stateKind, version: Self.stateVersion, payload: w.bytes)
        }
    }

    public func loadState(_ saved: DeviceState) throws {
        try saved.expect(kind: Self.stateKind, versions: Self.stateVersion...Self.stateVersion)
        var r = DeviceStateReader(saved)
        guard try r.u32() == UInt32(lineCount) else { throw DeviceStateError.invalid("gpio: the state is for another number of lines (this chip has \(lineCount))") }
        var lines: [LineState] = []
        for line in 0..<lineCount {
            let direction = try r.u8(), output = try r.bool(), rawTrigger = try r.u8(), latched = try r.bool()
            guard direction == Self.busyLine || LineDirection(rawValue: direction) != nil else {
                throw DeviceStateError.invalid("gpio: line \(line): direction \(direction)")
            }
            guard let trigger = IRQTrigger(rawValue: rawTrigger) else { throw DeviceStateError.invalid("gpio: line \(line): trigger \(rawTrigger)") }
            guard trigger == .none || direction == LineDirection.input.rawValue, !latched || trigger.latchesEdge(to: true) || trigger.latchesEdge(to: false) else {
                throw DeviceStateError.invalid("gpio: line \(line): trigger \(trigger) with direction \(direction), latched \(latched)")
            }
            lines.append(LineState(direction: direction, output: output, trigger: trigger, latched: latched))
        }
        try r.finish()
        try state.withLock { (state) throws in
            guard let current = state else { throw DeviceStateError.invalid("gpio: the lines' state is held by a running group") }
            // Every line the state calls free must be free here, before anything changes.
            for (line, saved) in lines.enumerated() where saved.direction != Self.busyLine {
                do { _ = try current.chip.direction(of: line) } catch {
                    throw DeviceStateError.invalid("gpio: line \(line) is kept by this host: \(error)")
                }
            }
            current.chip.reset()
            for (line, saved) in lines.enumerated() where saved.direction != Self.busyLine {
                let direction = LineDirection(rawValue: saved.direction)!
                try current.chip.setValue(saved.output, of: line)
                try current.chip.setDirection(direction, of: line)
                if saved.trigger != .none { try current.chip.setChangeReports(true, of: line) }
            }
            state!.interrupts.restore(triggers: lines.map(\.trigger), latches: lines.map(\.latched))
        }
    }
}
