/// One input event as virtio-input carries it (virtio 1.2, 5.8.6): le16 type, le16 code, le32 value,
/// the evdev event without its timestamp.
public struct InputEvent: Equatable, Sendable, CustomStringConvertible {
    public var type: UInt16
    public var code: UInt16
    public var value: Int32

    public init(type: UInt16, code: UInt16, value: Int32) {
        self.type = type
        self.code = code
        self.value = value
    }

    /// The size of a `struct virtio_input_event`.
    public static let size = 8

    /// The event that ends a batch (SYN_REPORT).
    public static let synReport = InputEvent(type: EventType.syn, code: SynCode.report, value: 0)

    public var isSynReport: Bool { type == EventType.syn && code == SynCode.report }

    /// The wire form, packed in one little-endian word: type in bits 0-15, code 16-31, value 32-63.
    public var packed: UInt64 {
        UInt64(type) | UInt64(code) << 16 | UInt64(UInt32(bitPattern: value)) << 32
    }

    public init(packed: UInt64) {
        type = UInt16(truncatingIfNeeded: packed)
        code = UInt16(truncatingIfNeeded: packed >> 16)
        value = Int32(bitPattern: UInt32(truncatingIfNeeded: packed >> 32))
    }

    /// The wire bytes (le16 type, le16 code, le32 value).
    public var bytes: [UInt8] { withUnsafeBytes(of: packed.littleEndian) { Array($0) } }

    /// `type code value`, the form the guest tool prints.
    public var description: String { "\(type) \(code) \(value)" }
}

/// Event types (linux/input-event-codes.h).
public enum EventType {
    public static let syn: UInt16 = 0x00
    public static let key: UInt16 = 0x01
    public static let rel: UInt16 = 0x02
    public static let abs: UInt16 = 0x03
    public static let msc: UInt16 = 0x04
    public static let sw: UInt16 = 0x05
    public static let led: UInt16 = 0x11
    public static let snd: UInt16 = 0x12
    public static let rep: UInt16 = 0x14
    public static let ff: UInt16 = 0x15
    public static let pwr: UInt16 = 0x16
    public static let ffStatus: UInt16 = 0x17
    /// EV_MAX + 1.
    public static let count = 0x20
    /// How many codes each type has (KEY_CNT, REL_CNT...): codes at or beyond are invalid.
    public static func codeCount(_ type: UInt16) -> Int {
        switch type {
        case syn: 0x10
        case key: 0x300
        case rel: 0x10
        case abs: 0x40
        case msc: 0x08
        case sw: 0x11
        case led: 0x10
        case snd: 0x08
        case rep: 0x02
        case ff: 0x80
        default: 0
        }
    }
}

/// EV_SYN codes.
public enum SynCode {
    public static let report: UInt16 = 0
    public static let dropped: UInt16 = 3
}

/// Input properties (INPUT_PROP_*).
public enum InputProperty {
    public static let pointer: UInt16 = 0x00
    public static let direct: UInt16 = 0x01
    public static let count = 0x20
}
