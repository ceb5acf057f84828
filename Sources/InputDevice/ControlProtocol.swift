/// The line protocol of the control socket (`--control-socket`): one command per line, one reply per
/// line, `ok` or `error <reason>`. Events are held in the open batch until `sync` (or a command that
/// ends its own batch: `type`, `touch`, `untouch`), then go to the guest as one batch.
///
///     key NAME|CODE VALUE     EV_KEY: KEY_A, KEY_ENTER, BTN_LEFT or a number; 0 release, 1 press, 2 repeat
///     btn NAME|CODE VALUE     the same (for buttons)
///     rel DX DY               REL_X DX, REL_Y DY (a zero is left out)
///     wheel N                 REL_WHEEL N
///     abs X Y                 ABS_X X, ABS_Y Y, each within the axis' range
///     touch X Y               finger 0 down or moved to X Y (multi-touch slot 0, BTN_TOUCH, ABS_X/Y), then SYN
///     untouch                 finger 0 lifted, then SYN
///     event TYPE CODE VALUE   any event the device declares, by name or number (event EV_KEY KEY_A 1)
///     sync                    SYN_REPORT: the batch goes to the guest
///     type "TEXT"             each character pressed and released (shift held where the US layout
///                             needs it), a batch each; escapes \n \t \" \\
///     status                  ok leds=BITS pending=EVENTS dropped=BATCHES
///
/// A line that fails adds nothing: every event of a command is checked before any is held. A line
/// whose events do not fit in the room left for events waiting for the guest is refused (`error busy`)
/// rather than have older batches dropped for it.
public struct ControlInterpreter: Sendable {
    public let description: InputDeviceDescription
    private var fingerDown = false
    private var nextTrackingID: Int32 = 0
    /// The events of the command being run, checked before they are held.
    private var staged: [InputEvent] = []

    public init(description: InputDeviceDescription) {
        self.description = description
        staged.reserveCapacity(64)
    }

    /// The longest line accepted (a longer one is answered with an error and skipped).
    public static let maxLineBytes = 4096

    /// Runs one command line; `leds` is the LED state the driver set, for `status`. Returns the reply
    /// line (no newline).
    public mutating func execute(_ line: Substring, into pending: inout PendingEvents, leds: UInt32 = 0) -> String {
        staged.removeAll(keepingCapacity: true)
        let args = ControlWords(line)
        guard let verb = args.verb else { return "error empty line" }
        do throws(ControlError) {
            switch verb {
            case "key", "btn":
                try arity(args, 2, "\(verb) NAME|CODE VALUE")
                let code = try keyCode(args[0])
                let value = try number(args[1])
                guard (0...2).contains(value) else { throw ControlError("a key value is 0 (release), 1 (press) or 2 (repeat), not \(value)") }
                try stage(EventType.key, code, value)
            case "rel":
                try arity(args, 2, "rel DX DY")
                let (dx, dy) = (try number(args[0]), try number(args[1]))
                if dx != 0 { try stage(EventType.rel, 0, dx) }
                if dy != 0 { try stage(EventType.rel, 1, dy) }
            case "wheel":
                try arity(args, 1, "wheel N")
                try stage(EventType.rel, 8, try number(args[0]))
            case "abs":
                try arity(args, 2, "abs X Y")
                try stage(EventType.abs, Axis.x, try number(args[0]))
                try stage(EventType.abs, Axis.y, try number(args[1]))
            case "touch":
                try arity(args, 2, "touch X Y")
                try touch(x: try number(args[0]), y: try number(args[1]))
            case "untouch":
                try arity(args, 0, "untouch")
                guard fingerDown else { throw ControlError("no finger is down") }
                try stage(EventType.abs, Axis.mtSlot, 0)
                try stage(EventType.abs, Axis.mtTrackingID, -1)
                try stage(EventType.key, 0x14a, 0)
                staged.append(.synReport)
            case "event":
                try arity(args, 3, "event TYPE CODE VALUE")
                let type = try eventType(args[0])
                let code = try eventCode(args[1], type: type)
                let value = try number(args[2])
                try stage(type, code, value)
            case "sync":
                try arity(args, 0, "sync")
                staged.append(.synReport)
            case "type":
                try typeText(line)
            case "status":
                try arity(args, 0, "status")
                return "ok leds=\(leds) pending=\(pending.count) dropped=\(pending.droppedBatches)"
            default:
                throw ControlError("unknown command \(verb.prefix(32)) (key btn rel wheel abs touch untouch event sync type status)")
            }
        } catch {
            staged.removeAll(keepingCapacity: true)
            return "error \(error.reason)"
        }
        var open = pending.openCount
        for event in staged {
            open = event.isSynReport ? 0 : open + 1
            if open > pending.maxBatch { return "error the batch would exceed \(pending.maxBatch) events: send sync" }
        }
        // A control client is told to wait rather than have batches dropped for it.
        guard staged.count <= pending.capacity - pending.count else {
            return "error busy: \(pending.count) events wait for the guest's buffers, room for \(pending.capacity - pending.count): retry later"
        }
        for event in staged { pending.append(event) }
        // Only now: a rejected line leaves the finger where it was.
        if verb == "touch" { fingerDown = true } else if verb == "untouch" { fingerDown = false }
        return "ok"
    }

    private mutating func touch(x: Int32, y: Int32) throws(ControlError) {
        try stage(EventType.abs, Axis.mtSlot, 0)
        if !fingerDown {
            try stage(EventType.abs, Axis.mtTrackingID, nextTrackingID)
            nextTrackingID = (nextTrackingID + 1) & 0xffff
        }
        try stage(EventType.abs, Axis.mtPositionX, x)
        try stage(EventType.abs, Axis.mtPositionY, y)
        if !fingerDown { try stage(EventType.key, 0x14a, 1) }
        try stage(EventType.abs, Axis.x, x)
        try stage(EventType.abs, Axis.y, y)
        staged.append(.synReport)
    }

    private mutating func typeText(_ line: Substring) throws(ControlError) {
        guard let open = line.firstIndex(of: "\""), let close = line.lastIndex(of: "\""), open < close,
              line[line.index(after: close)...].allSatisfy({ $0 == " " || $0 == "\r" }) else {
            throw ControlError("usage: type \"TEXT\"")
        }
        var escaped = false
        for byte in line[line.index(after: open)..<close].utf8 {
            var character = byte
            if escaped {
                escaped = false
                switch byte {
                case UInt8(ascii: "n"): character = UInt8(ascii: "\n")
                case UInt8(ascii: "t"): character = UInt8(ascii: "\t")
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): break
                default: throw ControlError("unknown escape \\\(Character(UnicodeScalar(byte)))")
                }
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
                continue
            }
            guard let (code, shift) = KeyCodes.typing(character) else {
                throw ControlError("cannot type byte \(character): printable ASCII, \\n and \\t only")
            }
            if shift { try stage(EventType.key, KeyCodes.leftShift, 1) }
            try stage(EventType.key, code, 1)
            staged.append(.synReport)
            try stage(EventType.key, code, 0)
            if shift { try stage(EventType.key, KeyCodes.leftShift, 0) }
            staged.append(.synReport)
        }
        if escaped { throw ControlError("the text ends inside an escape") }
    }

    /// Checks that the device declares the event and that an axis value is in range, then stages it.
    private mutating func stage(_ type: UInt16, _ code: UInt16, _ value: Int32) throws(ControlError) {
        let event = InputEvent(type: type, code: code, value: value)
        guard description.declares(event) else {
            throw ControlError("\(description.name) has no \(Self.name(of: type)) code \(type == EventType.key ? KeyCodes.keyName(code) : String(code))")
        }
        if type == EventType.abs, let info = description.axes[code], !(info.min...info.max).contains(value),
           !(code == Axis.mtTrackingID && value == -1) {
            throw ControlError("\(value) is outside axis \(code)'s range \(info.min)...\(info.max)")
        }
        staged.append(event)
    }

    private func arity(_ args: ControlWords, _ n: Int, _ usage: @autoclosure () -> String) throws(ControlError) {
        guard args.count == n else { throw ControlError("usage: \(usage())") }
    }

    private func number(_ word: Substring) throws(ControlError) -> Int32 {
        guard let value = Int32(word) else { throw ControlError("\(word.prefix(32)) is not a 32-bit number") }
        return value
    }

    private func keyCode(_ word: Substring) throws(ControlError) -> UInt16 {
        if let code = KeyCodes.key(named: word) { return code }
        if let code = UInt16(word) { return code }
        throw ControlError("unknown key \(word.prefix(32))")
    }

    private func eventType(_ word: Substring) throws(ControlError) -> UInt16 {
        if let type = KeyCodes.types.first(where: { $0.name == word })?.type { return type }
        if let type = UInt16(word), type < EventType.count { return type }
        throw ControlError("unknown event type \(word.prefix(32))")
    }

    private func eventCode(_ word: Substring, type: UInt16) throws(ControlError) -> UInt16 {
        if type == EventType.key, let code = KeyCodes.key(named: word) { return code }
        if let entry = KeyCodes.others.first(where: { $0.name == word }) {
            guard entry.type == type else { throw ControlError("\(word) is not a code of type \(type)") }
            return entry.code
        }
        if let code = UInt16(word) { return code }
        throw ControlError("unknown event code \(word.prefix(32))")
    }

    static func name(of type: UInt16) -> String {
        KeyCodes.types.first { $0.type == type }?.name ?? "type \(type)"
    }
}

/// The words of a control line (separated by spaces, tabs or a carriage return) without allocating:
/// the verb, up to three arguments, and how many arguments there were.
struct ControlWords {
    private(set) var verb: Substring?
    private var words: (Substring, Substring, Substring) = ("", "", "")
    /// The arguments after the verb (all of them, also beyond the three kept).
    private(set) var count = 0

    init(_ line: Substring) {
        var rest = line[...]
        while true {
            rest = rest.drop { Self.isSeparator($0) }
            guard !rest.isEmpty else { return }
            let word = rest.prefix { !Self.isSeparator($0) }
            rest = rest[word.endIndex...]
            if verb == nil {
                verb = word
                continue
            }
            switch count {
            case 0: words.0 = word
            case 1: words.1 = word
            case 2: words.2 = word
            default: break
            }
            count += 1
        }
    }

    /// Argument `i` (0, 1 or 2; checked against `count` by the caller).
    subscript(i: Int) -> Substring {
        switch i {
        case 0: words.0
        case 1: words.1
        default: words.2
        }
    }

    private static func isSeparator(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\r" }
}

/// Why a control line was refused: the text after `error `.
struct ControlError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
