/// The virtio-gpio wire format (virtio 1.2, 5.17 "GPIO Device"): requestq messages, their statuses,
/// line directions, interrupt trigger types and the eventq's interrupt statuses. Nothing else in the
/// device knows these numbers.
public enum VirtioGPIO {
    public static let deviceID: UInt32 = 41
    /// VIRTIO_GPIO_F_IRQ: the eventq exists and lines can interrupt (SET_IRQ_TYPE).
    public static let featureIRQ: UInt64 = 1 << 0
    public static let requestQueue = 0
    public static let eventQueue = 1

    /// `struct virtio_gpio_request`: type le16, gpio le16, value le32.
    public static let requestSize = 8
    /// `struct virtio_gpio_response`: status u8, value u8.
    public static let responseSize = 2
    /// `struct virtio_gpio_irq_request`: gpio le16.
    public static let irqRequestSize = 2
    /// `struct virtio_gpio_irq_response`: status u8.
    public static let irqResponseSize = 1
    /// `struct virtio_gpio_config`: ngpio le16, padding[2], gpio_names_size le32.
    public static let configSize = 8

    /// The requestq message types (VIRTIO_GPIO_MSG_*).
    public enum RequestType: UInt16, Sendable {
        case getNames = 1, getDirection, setDirection, getValue, setValue, setIRQType
    }

    /// VIRTIO_GPIO_STATUS_*.
    public enum Status: UInt8, Sendable {
        case ok = 0, error = 1
    }

    /// VIRTIO_GPIO_IRQ_STATUS_*: what a returned eventq buffer says.
    public enum IRQStatus: UInt8, Sendable {
        /// The buffer comes back unused: the interrupt is disabled (or never was enabled).
        case invalid = 0
        /// The line's interrupt fired.
        case valid = 1
    }

    /// The config space for `lineCount` lines and a names block of `namesSize` bytes.
    public static func config(lineCount: Int, namesSize: Int) -> [UInt8] {
        let lines = UInt16(lineCount), size = UInt32(namesSize)
        return [UInt8(lines & 0xff), UInt8(lines >> 8), 0, 0,
                UInt8(size & 0xff), UInt8(size >> 8 & 0xff), UInt8(size >> 16 & 0xff), UInt8(size >> 24)]
    }

    /// The GET_NAMES block: every line's name, each terminated by a NUL (empty names allowed), or no
    /// block at all when no line has a name (gpio_names_size 0).
    public static func namesBlock(_ names: [String]) -> [UInt8] {
        guard names.contains(where: { !$0.isEmpty }) else { return [] }
        return names.flatMap { Array($0.utf8) + [0] }
    }
}

/// A line's direction (VIRTIO_GPIO_DIRECTION_*).
public enum LineDirection: UInt8, Sendable, CustomStringConvertible {
    /// Unused: the device keeps no state for it.
    case none = 0
    case output = 1
    case input = 2

    public var description: String {
        switch self {
        case .none: "none"
        case .output: "out"
        case .input: "in"
        }
    }
}

/// A line's interrupt trigger (VIRTIO_GPIO_IRQ_TYPE_*).
public enum IRQTrigger: UInt8, Sendable {
    case none = 0
    case edgeRising = 1
    case edgeFalling = 2
    case edgeBoth = 3
    case levelHigh = 4
    case levelLow = 8

    /// Whether an edge to `level` is one this trigger latches (edge triggers only).
    func latchesEdge(to level: Bool) -> Bool {
        switch self {
        case .edgeRising: level
        case .edgeFalling: !level
        case .edgeBoth: true
        case .none, .levelHigh, .levelLow: false
        }
    }

    /// Whether `level` is the active level of a level trigger (false for the others).
    func isActive(level: Bool) -> Bool {
        switch self {
        case .levelHigh: level
        case .levelLow: !level
        default: false
        }
    }

    var isLevel: Bool { self == .levelHigh || self == .levelLow }
}
