import CInput
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The questions a virtio-input config answers, asked of an evdev device: the ioctls EVIOCGNAME,
/// EVIOCGUNIQ, EVIOCGID, EVIOCGPROP, EVIOCGBIT and EVIOCGABS. `EvdevNode` asks a real device;
/// a recorded description answers the same questions in tests.
public protocol EvdevQueries {
    func name() throws(SystemError) -> String
    /// The unique id (often empty; a device without one fails with ENOENT, read as empty).
    func uniq() throws(SystemError) -> String
    func ids() throws(SystemError) -> InputDeviceDescription.DeviceIDs
    /// A bitmap of INPUT_PROP_*.
    func propertyBits() throws(SystemError) -> [UInt8]
    /// A bitmap of the codes of `type` (type 0: of the event types).
    func bits(type: UInt16) throws(SystemError) -> [UInt8]
    func absInfo(axis: UInt16) throws(SystemError) -> InputDeviceDescription.AbsInfo
}

extension InputDeviceDescription {
    /// The description of the device `queries` asks: every event type it declares with its codes,
    /// every absolute axis' range.
    public init(querying queries: some EvdevQueries) throws(SystemError) {
        var codes: [UInt16: Set<UInt16>] = [:]
        var axes: [UInt16: AbsInfo] = [:]
        let types = Self.setBits(try queries.bits(type: 0))
        for type in types where type != EventType.syn && Int(type) < EventType.count {
            let set = Self.setBits(try queries.bits(type: type)).filter { Int($0) < EventType.codeCount(type) }
            if !set.isEmpty { codes[type] = set }
        }
        for axis in codes[EventType.abs] ?? [] { axes[axis] = try queries.absInfo(axis: axis) }
        self.init(name: try queries.name(), serial: (try? queries.uniq()) ?? "", ids: try queries.ids(),
                  properties: Self.setBits(try queries.propertyBits()), codes: codes, axes: axes)
    }

    static func setBits(_ bitmap: [UInt8]) -> Set<UInt16> {
        var set = Set<UInt16>()
        for (i, byte) in bitmap.enumerated() where byte != 0 {
            for bit in 0..<8 where byte & (1 << bit) != 0 { set.insert(UInt16(i * 8 + bit)) }
        }
        return set
    }
}

/// A host evdev device (`/dev/input/eventN`), opened non-blocking for reading events and writing
/// status events (LEDs, force feedback) back.
public final class EvdevNode: EvdevQueries, Sendable {
    public let path: String
    public let descriptor: OwnedDescriptor

    /// Opens `path` read-write (read-only when the device refuses writes: status events are then dropped).
    public init(path: String) throws(SystemError) {
        var fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 && (errno == EACCES || errno == EROFS) { fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else { throw SystemError("open \(path)", errno: errno) }
        self.path = path
        descriptor = OwnedDescriptor(fd)
    }

    /// Takes the device for this process alone (EVIOCGRAB): the host no longer sees its events.
    public func grab() throws(SystemError) {
        guard vhu_evdev_grab(descriptor.rawValue, 1) == 0 else { throw SystemError("EVIOCGRAB \(path)", errno: errno) }
    }

    public func name() throws(SystemError) -> String { try string("EVIOCGNAME", vhu_evdev_name) }
    public func uniq() throws(SystemError) -> String { try string("EVIOCGUNIQ", vhu_evdev_uniq) }

    public func ids() throws(SystemError) -> InputDeviceDescription.DeviceIDs {
        var ids: [UInt16] = [0, 0, 0, 0]
        guard vhu_evdev_id(descriptor.rawValue, &ids) >= 0 else { throw SystemError("EVIOCGID \(path)", errno: errno) }
        return .init(bustype: ids[0], vendor: ids[1], product: ids[2], version: ids[3])
    }

    public func propertyBits() throws(SystemError) -> [UInt8] {
        try bitmap("EVIOCGPROP") { vhu_evdev_props(descriptor.rawValue, $0, $1) }
    }

    public func bits(type: UInt16) throws(SystemError) -> [UInt8] {
        try bitmap("EVIOCGBIT") { vhu_evdev_bits(descriptor.rawValue, Int32(type), $0, $1) }
    }

    public func absInfo(axis: UInt16) throws(SystemError) -> InputDeviceDescription.AbsInfo {
        var info = vhu_input_absinfo()
        guard vhu_evdev_abs(descriptor.rawValue, Int32(axis), &info) >= 0 else { throw SystemError("EVIOCGABS \(path)", errno: errno) }
        return .init(min: info.minimum, max: info.maximum, fuzz: info.fuzz, flat: info.flat, res: info.resolution)
    }

    private func string(_ call: String, _ ioctl: (Int32, UnsafeMutablePointer<CChar>, Int32) -> Int32) throws(SystemError) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let n = ioctl(descriptor.rawValue, &buffer, Int32(buffer.count - 1))
        guard n >= 0 else { throw SystemError("\(call) \(path)", errno: errno) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func bitmap(_ call: String, _ ioctl: (UnsafeMutablePointer<UInt8>, Int32) -> Int32) throws(SystemError) -> [UInt8] {
        var bits = [UInt8](repeating: 0, count: InputConfigSpace.unionSize)
        let n = ioctl(&bits, Int32(bits.count))
        guard n >= 0 else { throw SystemError("\(call) \(path)", errno: errno) }
        return Array(bits.prefix(Int(n)))
    }
}
