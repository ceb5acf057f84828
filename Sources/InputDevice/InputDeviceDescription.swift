/// What a virtio-input device says about itself in its config space (virtio 1.2, 5.8.4): the values
/// behind every select/subsel the driver may ask for. Made from a host evdev device
/// (`EvdevDescription`), a synthetic kind (`SyntheticKind`), or a recording of either.
public struct InputDeviceDescription: Equatable, Sendable {
    /// An axis' range and filtering (`struct virtio_input_absinfo`).
    public struct AbsInfo: Equatable, Sendable {
        public var min: Int32, max: Int32, fuzz: Int32, flat: Int32, res: Int32
        public init(min: Int32, max: Int32, fuzz: Int32 = 0, flat: Int32 = 0, res: Int32 = 0) {
            (self.min, self.max, self.fuzz, self.flat, self.res) = (min, max, fuzz, flat, res)
        }
    }

    /// `struct virtio_input_devids`.
    public struct DeviceIDs: Equatable, Sendable {
        public var bustype: UInt16, vendor: UInt16, product: UInt16, version: UInt16
        public init(bustype: UInt16, vendor: UInt16, product: UInt16, version: UInt16) {
            (self.bustype, self.vendor, self.product, self.version) = (bustype, vendor, product, version)
        }
    }

    public var name: String
    public var serial: String
    public var ids: DeviceIDs
    /// INPUT_PROP_* numbers.
    public var properties: Set<UInt16>
    /// The codes of each event type the device sends (EV_SYN excluded: the driver assumes it).
    public var codes: [UInt16: Set<UInt16>]
    /// The range of each absolute axis (each EV_ABS code has one).
    public var axes: [UInt16: AbsInfo]

    public init(name: String, serial: String = "", ids: DeviceIDs, properties: Set<UInt16> = [],
                codes: [UInt16: Set<UInt16>], axes: [UInt16: AbsInfo] = [:]) {
        self.name = name
        self.serial = serial
        self.ids = ids
        self.properties = properties
        self.codes = codes
        self.axes = axes
    }

    /// Whether the device declares `event` (its type and code), or it is a SYN event.
    public func declares(_ event: InputEvent) -> Bool {
        event.type == EventType.syn ? Int(event.code) < EventType.codeCount(EventType.syn)
            : codes[event.type]?.contains(event.code) ?? false
    }
}

/// The device's config space (virtio 1.2, 5.8.4): the driver writes `select` and `subsel`, then reads
/// `size` and that many bytes of the union. Everything but select and subsel is read-only.
public struct InputConfigSpace: Sendable {
    /// select, subsel, size, 5 reserved bytes, 128 bytes of union.
    public static let size = 136
    public static let unionOffset = 8
    public static let unionSize = 128

    /// `enum virtio_input_config_select`.
    public enum Select {
        public static let unset: UInt8 = 0x00
        public static let idName: UInt8 = 0x01
        public static let idSerial: UInt8 = 0x02
        public static let idDevids: UInt8 = 0x03
        public static let propBits: UInt8 = 0x10
        public static let evBits: UInt8 = 0x11
        public static let absInfo: UInt8 = 0x12
    }

    public let description: InputDeviceDescription
    public private(set) var select: UInt8 = 0
    public private(set) var subsel: UInt8 = 0
    /// The union for the current select/subsel, `size` bytes long (at most 128).
    public private(set) var payload: [UInt8] = []

    public init(_ description: InputDeviceDescription) { self.description = description }

    /// The bytes at `offset` (bounds already checked by the kit).
    public func read(offset: Int, count: Int) -> [UInt8] {
        (offset..<offset + count).map { byte(at: $0) }
    }

    private func byte(at offset: Int) -> UInt8 {
        switch offset {
        case 0: select
        case 1: subsel
        case 2: UInt8(payload.count)
        case Self.unionOffset..<Self.size where offset - Self.unionOffset < payload.count: payload[offset - Self.unionOffset]
        default: 0
        }
    }

    /// Takes select and subsel (offsets 0 and 1) from a write that covers either and recomputes the
    /// union; the write's other bytes are ignored (QEMU's vhost-user-input writes the whole config space,
    /// read-only fields as it last read them, whenever the driver writes select or subsel). A write that
    /// covers neither is refused.
    public mutating func write(offset: Int, bytes: [UInt8]) throws(InputConfigError) {
        guard offset >= 0, offset < 2, !bytes.isEmpty else { throw .readOnly(offset: offset, count: bytes.count) }
        for (i, value) in bytes.prefix(2 - offset).enumerated() {
            if offset + i == 0 { select = value } else { subsel = value }
        }
        payload = Self.payload(select: select, subsel: subsel, of: description)
    }

    /// The union's bytes for `select`/`subsel` (empty: the device has nothing there, size 0).
    public static func payload(select: UInt8, subsel: UInt8, of d: InputDeviceDescription) -> [UInt8] {
        switch select {
        case Select.idName where subsel == 0: return truncated(Array(d.name.utf8))
        case Select.idSerial where subsel == 0: return truncated(Array(d.serial.utf8))
        case Select.idDevids where subsel == 0:
            return [d.ids.bustype, d.ids.vendor, d.ids.product, d.ids.version].flatMap(littleEndian)
        case Select.propBits where subsel == 0: return bitmap(d.properties)
        case Select.evBits: return subsel == UInt8(EventType.syn) ? [] : bitmap(d.codes[UInt16(subsel)] ?? [])
        case Select.absInfo:
            guard d.codes[EventType.abs]?.contains(UInt16(subsel)) ?? false, let info = d.axes[UInt16(subsel)] else { return [] }
            return [info.min, info.max, info.fuzz, info.flat, info.res].flatMap { littleEndian(UInt32(bitPattern: $0)) }
        default: return []
        }
    }

    private static func truncated(_ bytes: [UInt8]) -> [UInt8] { Array(bytes.prefix(unionSize)) }

    private static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// A bitmap of `bits` up to its last set byte (size 0 when empty), as QEMU and the spec's drivers expect.
    static func bitmap(_ bits: Set<UInt16>) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: unionSize)
        var used = 0
        for bit in bits where Int(bit) < unionSize * 8 {
            bytes[Int(bit) / 8] |= 1 << (bit % 8)
            used = max(used, Int(bit) / 8 + 1)
        }
        return Array(bytes.prefix(used))
    }
}

public enum InputConfigError: Error, Equatable, CustomStringConvertible {
    case readOnly(offset: Int, count: Int)
    public var description: String {
        switch self {
        case let .readOnly(offset, count):
            "config write of \(count) byte(s) at offset \(offset) refused: it covers neither select (0) nor subsel (1), the only writable fields"
        }
    }
}
