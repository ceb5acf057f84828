/// The virtio console's wire format (virtio 1.2, section 5.3): feature bits, config space, queue
/// layout and control messages. The only code that knows these byte layouts.
public enum VirtioConsole {
    public static let deviceID: UInt32 = 3

    /// VIRTIO_CONSOLE_F_SIZE: cols and rows in the config space are valid.
    public static let featureSize: UInt64 = 1 << 0
    /// VIRTIO_CONSOLE_F_MULTIPORT: several ports, max_nr_ports valid, control queues in use.
    public static let featureMultiport: UInt64 = 1 << 1
    /// VIRTIO_CONSOLE_F_EMERG_WRITE: a write to emerg_wr outputs one character on port 0.
    public static let featureEmergencyWrite: UInt64 = 1 << 2

    /// struct virtio_console_config: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr.
    public static let configSize = 12
    public static let emergencyWriteOffset = 8

    /// The control queues: control receive (device to driver) and control transmit (driver to device).
    public static let controlReceiveQueue = 2, controlTransmitQueue = 3

    /// Port `port`'s receive queue (host to guest); its transmit queue is the next one.
    public static func receiveQueue(port: Int) -> Int { port == 0 ? 0 : 2 * port + 2 }
    public static func transmitQueue(port: Int) -> Int { receiveQueue(port: port) + 1 }
    /// The port a data queue belongs to (nil for the control queues).
    public static func port(ofQueue index: Int) -> Int? {
        switch index {
        case 0, 1: 0
        case 2, 3: nil
        default: (index - 2) / 2
        }
    }
    /// Every queue of a device with `maxPorts` ports: a pair per port plus the control pair.
    public static func queueCount(maxPorts: Int) -> Int { 2 * (maxPorts + 1) }

    /// The events of `struct virtio_console_control` (virtio 1.2, 5.3.6.2).
    public enum Event: UInt16, Sendable, CustomStringConvertible {
        case deviceReady = 0, deviceAdd = 1, deviceRemove = 2, portReady = 3, consolePort = 4, resize = 5,
             portOpen = 6, portName = 7

        public var description: String {
            switch self {
            case .deviceReady: "DEVICE_READY"
            case .deviceAdd: "DEVICE_ADD"
            case .deviceRemove: "DEVICE_REMOVE"
            case .portReady: "PORT_READY"
            case .consolePort: "CONSOLE_PORT"
            case .resize: "RESIZE"
            case .portOpen: "PORT_OPEN"
            case .portName: "PORT_NAME"
            }
        }
    }

    /// The size of `struct virtio_console_control`: le32 id, le16 event, le16 value.
    public static let controlHeaderSize = 8
    /// The longest port name the device sends (the driver's control buffers are a page).
    public static let maxNameBytes = 255
}

/// A control message: the header, and the payload RESIZE (le16 cols, le16 rows) and PORT_NAME (the
/// name, NUL-terminated) carry after it.
public struct ConsoleControlMessage: Equatable, Sendable {
    public var id: UInt32
    public var event: UInt16
    public var value: UInt16
    public var payload: [UInt8]

    public init(id: UInt32, event: VirtioConsole.Event, value: UInt16, payload: [UInt8] = []) {
        self.init(id: id, rawEvent: event.rawValue, value: value, payload: payload)
    }

    public init(id: UInt32, rawEvent: UInt16, value: UInt16, payload: [UInt8] = []) {
        self.id = id
        self.event = rawEvent
        self.value = value
        self.payload = payload
    }

    /// RESIZE for port `id`: cols then rows, as the spec lays out struct virtio_console_resize.
    public static func resize(id: UInt32, cols: UInt16, rows: UInt16) -> ConsoleControlMessage {
        ConsoleControlMessage(id: id, event: .resize, value: 0, payload: littleEndianBytes(cols) + littleEndianBytes(rows))
    }

    /// PORT_NAME for port `id`.
    public static func name(id: UInt32, _ name: String) -> ConsoleControlMessage {
        ConsoleControlMessage(id: id, event: .portName, value: 1, payload: Array(name.utf8) + [0])
    }

    public var bytes: [UInt8] { littleEndianBytes(id) + littleEndianBytes(event) + littleEndianBytes(value) + payload }

    /// Parses a message the driver sent; nil when it is shorter than the header.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= VirtioConsole.controlHeaderSize else { return nil }
        func le(_ at: Int, _ n: Int) -> UInt32 { (0..<n).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        self.init(id: le(0, 4), rawEvent: UInt16(le(4, 2)), value: UInt16(le(6, 2)), payload: Array(bytes[8...]))
    }
}

/// The little-endian bytes of `value`.
func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// A terminal's size.
public struct ConsoleSize: Equatable, Sendable, CustomStringConvertible {
    public var cols: UInt16
    public var rows: UInt16
    public init(cols: UInt16, rows: UInt16) {
        self.cols = cols
        self.rows = rows
    }
    public static let `default` = ConsoleSize(cols: 80, rows: 24)
    public var description: String { "\(cols)x\(rows)" }
}
