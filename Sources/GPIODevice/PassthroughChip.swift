import CGPIO
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A Linux GPIO chip (`/dev/gpiochipN`) through the character device's uAPI v2: each line the driver
/// uses is requested on its own (GPIO_V2_GET_LINE_IOCTL) with the direction, output value and edge
/// detection it asks for; the request descriptors of lines with edge detection are watched by the
/// group and their edge events become `lineChanged` reports. Lines the host already uses are refused.
public final class PassthroughChip: GPIOChip {
    public let path: String
    public let label: String
    public let lineCount: Int
    public let lineNames: [String]
    private let chip: OwnedDescriptor
    private static let consumer = "vhost-user-gpio"

    private struct Line {
        var request: OwnedDescriptor?
        var direction = LineDirection.none
        var output = false
        var reportsChanges = false
    }
    private var lines: [Line]
    private var lineByRequest: [Int32: Int] = [:]
    private weak var events: (any GPIOChipEvents)?

    /// Opens the chip and reads its lines' names; fails when `path` is not a GPIO chip.
    public init(path: String) throws(GPIOChipError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open \(path)", errno: errno) }
        chip = OwnedDescriptor(fd)
        self.path = path
        var count: UInt32 = 0
        var labelBytes = [CChar](repeating: 0, count: 64)
        guard vhu_gpio_chip_info(fd, &count, &labelBytes, UInt32(labelBytes.count)) == 0 else {
            throw .system("GPIO_GET_CHIPINFO_IOCTL on \(path)", errno: errno)
        }
        guard count >= 1, count <= UInt32(UInt16.max) else { throw .notPossible(0, "\(path) has \(count) lines") }
        label = Self.string(labelBytes)
        lineCount = Int(count)
        var names: [String] = []
        for offset in 0..<count {
            var name = [CChar](repeating: 0, count: 64)
            var isOutput: Int32 = 0, isUsed: Int32 = 0
            guard vhu_gpio_line_info(fd, offset, &name, UInt32(name.count), &isOutput, &isUsed) == 0 else {
                throw .system("GPIO_V2_GET_LINEINFO_IOCTL line \(offset) of \(path)", errno: errno)
            }
            names.append(Self.string(name))
        }
        lineNames = names
        lines = [Line](repeating: Line(), count: lineCount)
    }

    public func attach(_ events: any GPIOChipEvents) {
        self.events = events
        for fd in lineByRequest.keys { events.watch(fd) }
    }

    public func detach() { events = nil }

    /// Reads every pending edge event of the line whose request is `fd`.
    public func ready(_ fd: Int32) {
        guard let line = lineByRequest[fd] else { return }
        while true {
            let edge = vhu_gpio_read_edge(fd)
            guard edge >= 0 else {
                // -2: drained. -1: the request broke (the chip went away): stop watching, or the
                // level-triggered watch would report it forever.
                if edge == -1 { events?.unwatch(fd) }
                return
            }
            events?.lineChanged(line, level: edge == 1)
        }
    }

    /// The direction the driver configured, or the host's for a line it has not touched.
    public func direction(of line: Int) throws(GPIOChipError) -> LineDirection {
        if lines[line].direction != .none { return lines[line].direction }
        var name = [CChar](repeating: 0, count: 64)
        var isOutput: Int32 = 0, isUsed: Int32 = 0
        guard vhu_gpio_line_info(chip.rawValue, UInt32(line), &name, UInt32(name.count), &isOutput, &isUsed) == 0 else {
            throw .system("GPIO_V2_GET_LINEINFO_IOCTL line \(line)", errno: errno)
        }
        if isUsed != 0 { throw .lineBusy(line) }
        return isOutput != 0 ? .output : .input
    }

    public func setDirection(_ direction: LineDirection, of line: Int) throws(GPIOChipError) {
        guard direction != .none else { return release(line) }
        try configure(line, direction: direction, output: lines[line].output, reports: direction == .input && lines[line].reportsChanges)
    }

    public func value(of line: Int) throws(GPIOChipError) -> Bool {
        let request = try requested(line)
        let value = vhu_gpio_get_value(request)
        guard value >= 0 else { throw .system("GPIO_V2_LINE_GET_VALUES_IOCTL line \(line)", errno: errno) }
        return value == 1
    }

    public func setValue(_ value: Bool, of line: Int) throws(GPIOChipError) {
        lines[line].output = value
        guard lines[line].direction == .output, let request = lines[line].request else { return }
        guard vhu_gpio_set_value(request.rawValue, value ? 1 : 0) == 0 else {
            throw .system("GPIO_V2_LINE_SET_VALUES_IOCTL line \(line)", errno: errno)
        }
    }

    /// Edge detection on both edges, which the kernel allows on inputs only: a line the driver has not
    /// configured becomes an input.
    public func setChangeReports(_ enabled: Bool, of line: Int) throws(GPIOChipError) {
        var direction = lines[line].direction
        if enabled {
            if direction == .output { throw .notPossible(line, "edge events on an output") }
            direction = .input
        } else if lines[line].request == nil {
            return
        }
        try configure(line, direction: direction, output: lines[line].output, reports: enabled)
        lines[line].reportsChanges = enabled
    }

    public func reset() {
        for line in lines.indices where lines[line].request != nil { release(line) }
        lines = [Line](repeating: Line(), count: lineCount)
    }

    // MARK: Line requests

    /// The line's request, made as-is (keeping the host's direction) when the driver has not configured
    /// it; it stays until the driver sets the direction to NONE or resets the device.
    private func requested(_ line: Int) throws(GPIOChipError) -> Int32 {
        if let request = lines[line].request { return request.rawValue }
        try configure(line, direction: .none, output: false, reports: false)
        return lines[line].request!.rawValue
    }

    private func configure(_ line: Int, direction: LineDirection, output: Bool, reports: Bool) throws(GPIOChipError) {
        let mode: Int32 = switch direction {
        case .none: Int32(VHU_GPIO_AS_IS)
        case .input: Int32(VHU_GPIO_INPUT)
        case .output: Int32(VHU_GPIO_OUTPUT)
        }
        if let request = lines[line].request {
            guard vhu_gpio_configure_line(request.rawValue, mode, output ? 1 : 0, reports ? 1 : 0) == 0 else {
                throw .system("GPIO_V2_LINE_SET_CONFIG_IOCTL line \(line)", errno: errno)
            }
        } else {
            let fd = vhu_gpio_request_line(chip.rawValue, UInt32(line), mode, output ? 1 : 0, reports ? 1 : 0, Self.consumer)
            guard fd >= 0 else {
                if errno == EBUSY { throw .lineBusy(line) }
                throw .system("GPIO_V2_GET_LINE_IOCTL line \(line)", errno: errno)
            }
            lines[line].request = OwnedDescriptor(fd)
            lineByRequest[fd] = line
            events?.watch(fd)
        }
        if direction != .none { lines[line].direction = direction }
    }

    /// A NUL-terminated C string from a fixed buffer.
    private static func string(_ bytes: [CChar]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func release(_ line: Int) {
        if let request = lines[line].request {
            events?.unwatch(request.rawValue)
            lineByRequest[request.rawValue] = nil
        }
        lines[line] = Line()
    }
}
