/// Every line's interrupt state (virtio 1.2, 5.17.6 and 5.17.7): its trigger (enabled when not
/// `.none`), an edge latched while the interrupt was masked, and the eventq buffer the driver queued
/// to unmask it. The rules:
/// - an edge is latched from the moment the interrupt is enabled, masked or not; a level is never
///   latched (it is sensed when the buffer arrives, and again after each re-queue while it holds);
/// - a buffer is used (VALID) only when the line fires; that masks the line until the next buffer;
/// - disabling the interrupt (`.none`) discards the latch and returns the buffer INVALID, and so does
///   a buffer queued while the interrupt is disabled.
struct LineInterrupts {
    /// An eventq buffer held until its line fires: the chain's head and where its status byte goes.
    struct Buffer {
        let head: UInt16
        let status: UnsafeMutableRawPointer
    }

    /// What to do with a buffer the driver just queued.
    enum Unmask {
        /// Keep it until the line fires.
        case held
        /// The line fires now (a latched edge, or the active level): use it with VALID.
        case fire(Buffer)
        /// Return it with INVALID: the interrupt is disabled, or the line already has a buffer.
        case refuse(Buffer, reason: String)
    }

    private(set) var triggers: [IRQTrigger]
    private var latched: [Bool]
    private var buffers: [Buffer?]

    init(lineCount: Int) {
        triggers = [IRQTrigger](repeating: .none, count: lineCount)
        latched = [Bool](repeating: false, count: lineCount)
        buffers = [Buffer?](repeating: nil, count: lineCount)
    }

    func isHolding(_ line: Int) -> Bool { buffers[line] != nil }

    /// Sets the trigger. Disabling returns the line's buffer (to be returned INVALID); enabling starts
    /// latching edges from now.
    mutating func setTrigger(_ trigger: IRQTrigger, of line: Int) -> Buffer? {
        triggers[line] = trigger
        latched[line] = false
        guard trigger == .none else { return nil }
        defer { buffers[line] = nil }
        return buffers[line]
    }

    /// The driver queued `buffer` for `line`; `level` senses the line's level (for a level trigger;
    /// nil when it cannot be read: the buffer is held).
    mutating func unmask(_ line: Int, with buffer: Buffer, level: () -> Bool?) -> Unmask {
        let trigger = triggers[line]
        if trigger == .none { return .refuse(buffer, reason: "its interrupt is not enabled") }
        if buffers[line] != nil { return .refuse(buffer, reason: "it already has an eventq buffer") }
        if latched[line] {
            latched[line] = false
            return .fire(buffer)
        }
        if trigger.isLevel, let level = level(), trigger.isActive(level: level) { return .fire(buffer) }
        buffers[line] = buffer
        return .held
    }

    /// The line's input changed to `level`: returns the buffer to use (VALID) when the line fires now.
    mutating func changed(_ line: Int, to level: Bool) -> Buffer? {
        let trigger = triggers[line]
        let fires = trigger.latchesEdge(to: level) || trigger.isActive(level: level)
        guard fires else { return nil }
        guard let buffer = buffers[line] else {
            if !trigger.isLevel { latched[line] = true }
            return nil
        }
        buffers[line] = nil
        return buffer
    }

    /// Takes every held buffer (the group stops; they go back INVALID). Triggers and latches stay.
    mutating func takeBuffers() -> [Buffer] {
        defer { buffers = [Buffer?](repeating: nil, count: buffers.count) }
        return buffers.compactMap { $0 }
    }

    /// Whether an edge is latched on each line (for the device's migration state).
    var latches: [Bool] { latched }

    /// Sets every line's trigger and latch from a migration state (no buffer is held: the group is stopped).
    mutating func restore(triggers: [IRQTrigger], latches: [Bool]) {
        precondition(triggers.count == self.triggers.count && latches.count == latched.count)
        self.triggers = triggers
        latched = latches
        buffers = [Buffer?](repeating: nil, count: buffers.count)
    }

    /// Forgets everything (device reset). Held buffers must have been taken.
    mutating func reset() {
        self = LineInterrupts(lineCount: triggers.count)
    }
}
