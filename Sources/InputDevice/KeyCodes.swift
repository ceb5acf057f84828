/// The names of the codes the control protocol accepts (linux/input-event-codes.h), and which key
/// types each printable ASCII character on a US layout.
public enum KeyCodes {
    /// KEY_*, BTN_*: name → code.
    public static let keys: [(name: String, code: UInt16)] = {
        var table: [(String, UInt16)] = [("KEY_ESC", 1), ("KEY_0", 11), ("KEY_MINUS", 12), ("KEY_EQUAL", 13),
            ("KEY_BACKSPACE", 14), ("KEY_TAB", 15), ("KEY_LEFTBRACE", 26), ("KEY_RIGHTBRACE", 27), ("KEY_ENTER", 28),
            ("KEY_LEFTCTRL", 29), ("KEY_SEMICOLON", 39), ("KEY_APOSTROPHE", 40), ("KEY_GRAVE", 41), ("KEY_LEFTSHIFT", 42),
            ("KEY_BACKSLASH", 43), ("KEY_COMMA", 51), ("KEY_DOT", 52), ("KEY_SLASH", 53), ("KEY_RIGHTSHIFT", 54),
            ("KEY_KPASTERISK", 55), ("KEY_LEFTALT", 56), ("KEY_SPACE", 57), ("KEY_CAPSLOCK", 58), ("KEY_NUMLOCK", 69),
            ("KEY_SCROLLLOCK", 70), ("KEY_F11", 87), ("KEY_F12", 88), ("KEY_RIGHTCTRL", 97), ("KEY_RIGHTALT", 100),
            ("KEY_HOME", 102), ("KEY_UP", 103), ("KEY_PAGEUP", 104), ("KEY_LEFT", 105), ("KEY_RIGHT", 106),
            ("KEY_END", 107), ("KEY_DOWN", 108), ("KEY_PAGEDOWN", 109), ("KEY_INSERT", 110), ("KEY_DELETE", 111),
            ("KEY_LEFTMETA", 125), ("KEY_RIGHTMETA", 126),
            ("BTN_LEFT", 0x110), ("BTN_RIGHT", 0x111), ("BTN_MIDDLE", 0x112), ("BTN_SIDE", 0x113), ("BTN_EXTRA", 0x114),
            ("BTN_TOOL_PEN", 0x140), ("BTN_TOOL_FINGER", 0x145), ("BTN_TOUCH", 0x14a), ("BTN_STYLUS", 0x14b)]
        for (i, digit) in "123456789".enumerated() { table.append(("KEY_\(digit)", UInt16(2 + i))) }
        for (row, first) in [("QWERTYUIOP", 16), ("ASDFGHJKL", 30), ("ZXCVBNM", 44)] as [(String, UInt16)] {
            for (i, letter) in row.enumerated() { table.append(("KEY_\(letter)", first + UInt16(i))) }
        }
        for f in 1...10 { table.append(("KEY_F\(f)", UInt16(58 + f))) }
        return table
    }()

    /// REL_*, ABS_*, LED_*, SYN_*: name → (type, code), for `event`.
    public static let others: [(name: String, type: UInt16, code: UInt16)] = [
        ("REL_X", EventType.rel, 0), ("REL_Y", EventType.rel, 1), ("REL_HWHEEL", EventType.rel, 6), ("REL_WHEEL", EventType.rel, 8),
        ("ABS_X", EventType.abs, 0), ("ABS_Y", EventType.abs, 1), ("ABS_PRESSURE", EventType.abs, 0x18),
        ("ABS_MT_SLOT", EventType.abs, Axis.mtSlot), ("ABS_MT_POSITION_X", EventType.abs, Axis.mtPositionX),
        ("ABS_MT_POSITION_Y", EventType.abs, Axis.mtPositionY), ("ABS_MT_TRACKING_ID", EventType.abs, Axis.mtTrackingID),
        ("LED_NUML", EventType.led, 0), ("LED_CAPSL", EventType.led, 1), ("LED_SCROLLL", EventType.led, 2),
        ("SYN_REPORT", EventType.syn, 0), ("MSC_SCAN", EventType.msc, 4),
    ]

    /// The event type names `event` accepts.
    public static let types: [(name: String, type: UInt16)] = [
        ("EV_SYN", EventType.syn), ("EV_KEY", EventType.key), ("EV_REL", EventType.rel), ("EV_ABS", EventType.abs),
        ("EV_MSC", EventType.msc), ("EV_SW", EventType.sw), ("EV_LED", EventType.led), ("EV_SND", EventType.snd),
        ("EV_REP", EventType.rep), ("EV_FF", EventType.ff),
    ]

    public static func key(named name: Substring) -> UInt16? { keys.first { $0.name == name }?.code }

    /// The name of key `code`, or its number.
    public static func keyName(_ code: UInt16) -> String { keys.first { $0.code == code }?.name ?? String(code) }

    /// The key and whether shift is held for printable ASCII `character` (US layout), nil for others.
    public static func typing(_ character: UInt8) -> (code: UInt16, shift: Bool)? {
        switch character {
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return (letter(character - UInt8(ascii: "a")), false)
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return (letter(character - UInt8(ascii: "A")), true)
        case UInt8(ascii: "1")...UInt8(ascii: "9"): return (UInt16(character - UInt8(ascii: "1")) + 2, false)
        case UInt8(ascii: "0"): return (11, false)
        default: break
        }
        for (plain, shifted, code) in punctuation {
            if character == plain { return (code, false) }
            if character == shifted { return (code, true) }
        }
        return nil
    }

    /// KEY_A ... KEY_Z in alphabetical order (the codes follow the keyboard's rows).
    private static let letterCodes: [UInt16] = [30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17, 45, 21, 44]
    private static func letter(_ index: UInt8) -> UInt16 { letterCodes[Int(index)] }

    /// (unshifted, shifted, key) for the US layout's punctuation, space, tab and newline.
    private static let punctuation: [(UInt8, UInt8, UInt16)] = [
        (UInt8(ascii: " "), 0, 57), (UInt8(ascii: "\n"), 0, 28), (UInt8(ascii: "\t"), 0, 15),
        (UInt8(ascii: "-"), UInt8(ascii: "_"), 12), (UInt8(ascii: "="), UInt8(ascii: "+"), 13),
        (UInt8(ascii: "["), UInt8(ascii: "{"), 26), (UInt8(ascii: "]"), UInt8(ascii: "}"), 27),
        (UInt8(ascii: ";"), UInt8(ascii: ":"), 39), (UInt8(ascii: "'"), UInt8(ascii: "\""), 40),
        (UInt8(ascii: "`"), UInt8(ascii: "~"), 41), (UInt8(ascii: "\\"), UInt8(ascii: "|"), 43),
        (UInt8(ascii: ","), UInt8(ascii: "<"), 51), (UInt8(ascii: "."), UInt8(ascii: ">"), 52),
        (UInt8(ascii: "/"), UInt8(ascii: "?"), 53),
        // The digit row shifted: ! @ # $ % ^ & * ( ) are KEY_1 ... KEY_0.
    ] + zip(Array("!@#$%^&*()".utf8), 2...11).map { (0, $0.0, UInt16($0.1)) }

    static let leftShift: UInt16 = 42
}

/// Axis numbers the synthetic devices use.
public enum Axis {
    public static let x: UInt16 = 0x00
    public static let y: UInt16 = 0x01
    public static let mtSlot: UInt16 = 0x2f
    public static let mtPositionX: UInt16 = 0x35
    public static let mtPositionY: UInt16 = 0x36
    public static let mtTrackingID: UInt16 = 0x39
}
