import VhostUserKit

/// The device's migration state (DEVICE_STATE): the config space's select and subsel, the complete
/// batches of events not yet delivered, and the LEDs the driver set. The batch a host source is in
/// the middle of stays behind (the loading daemon's source is another device), and so does key state:
/// the device keeps none beyond the events it has not delivered.
extension InputDevice {
    static let stateKind = "inpt"
    static let stateVersion: UInt16 = 1
    /// LED codes go up to LED_MAX (0x0f).
    static let ledMask: UInt32 = 0xffff

    public func saveState() throws -> DeviceState? {
        var w = ByteWriter()
        let (select, subsel) = config.withLock { ($0.select, $0.subsel) }
        w.append([select, subsel])
        try host.withLock { (host) throws in
            guard let host else { throw DeviceStateError.invalid("input: the events are held by a running group") }
            w.u32(host.leds)
            w.u32(UInt32(host.pending.completeCount))
            for i in 0..<host.pending.completeCount { w.u64(host.pending.event(at: i).packed) }
        }
        return DeviceState(kind: Self.stateKind, version: Self.stateVersion, payload: w.bytes)
    }

    public func loadState(_ saved: DeviceState) throws {
        try saved.expect(kind: Self.stateKind, versions: Self.stateVersion...Self.stateVersion)
        var r = DeviceStateReader(saved)
        var space = InputConfigSpace(description)
        try space.write(offset: 0, bytes: [try r.u8(), try r.u8()])
        let leds = try r.u32()
        guard leds & ~Self.ledMask == 0 else { throw DeviceStateError.invalid("input: LED bits 0x\(String(leds, radix: 16))") }
        try host.withLock { (host) throws in
            guard let current = host else { throw DeviceStateError.invalid("input: the events are held by a running group") }
            let count = try r.count(max: current.pending.capacity)
            var events: [InputEvent] = []
            var batch = 0
            for i in 0..<count {
                let event = InputEvent(packed: try r.u64())
                batch = event.isSynReport ? 0 : batch + 1
                guard batch < current.pending.maxBatch else { throw DeviceStateError.invalid("input: a batch longer than \(current.pending.maxBatch) events at event \(i)") }
                events.append(event)
            }
            guard events.last?.isSynReport ?? true else { throw DeviceStateError.invalid("input: the events do not end with SYN_REPORT") }
            try r.finish()
            var pending = current.pending
            pending.removeAll()
            for event in events { pending.append(event) }
            host!.pending = pending
            host!.leds = leds
        }
        config.withLock { $0 = space }
    }
}
