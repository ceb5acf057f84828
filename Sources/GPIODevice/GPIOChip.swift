/// The host side of a virtio-gpio device: a simulated chip or a Linux GPIO chip. The device's queue
/// group drives it on its worker thread alone, between `attach` and `detach`; it reports input
/// changes through the `GPIOChipEvents` it was attached to. Line numbers are checked by the caller
/// (`0..<lineCount`).
public protocol GPIOChip: AnyObject {
    var lineCount: Int { get }
    /// Every line's name (empty when it has none).
    var lineNames: [String] { get }
    /// The group started: watch the chip's descriptors through `events` and report input changes to it.
    func attach(_ events: any GPIOChipEvents)
    /// The group stopped: `events` is gone (its watches went with the group).
    func detach()
    /// A descriptor the chip watched is readable (or hung up).
    func ready(_ fd: Int32)

    func direction(of line: Int) throws(GPIOChipError) -> LineDirection
    /// Configures the line (output drives the value last given with `setValue`); `.none` releases it
    /// and forgets its state.
    func setDirection(_ direction: LineDirection, of line: Int) throws(GPIOChipError)
    /// The level the line is at: sensed for an input, driven for an output.
    func value(of line: Int) throws(GPIOChipError) -> Bool
    /// The line's output value: driven now for an output, kept for when it becomes one.
    func setValue(_ value: Bool, of line: Int) throws(GPIOChipError)
    /// Whether the chip reports the line's input changes (both edges) to `GPIOChipEvents.lineChanged`.
    func setChangeReports(_ enabled: Bool, of line: Int) throws(GPIOChipError)
    /// The driver reset the device or left: every line back to its initial state.
    func reset()
}

/// What a chip tells the queue group that drives it.
public protocol GPIOChipEvents: AnyObject {
    /// Watch `fd` for readability in the group's epoll set; the chip gets `ready(fd)`.
    func watch(_ fd: Int32)
    /// Stop watching `fd` (before the chip closes it).
    func unwatch(_ fd: Int32)
    /// The input level of `line` changed to `level` (an edge).
    func lineChanged(_ line: Int, level: Bool)
}

/// Why a chip refused a line operation (the driver gets VIRTIO_GPIO_STATUS_ERR).
public enum GPIOChipError: Error, Equatable, CustomStringConvertible {
    /// The host uses the line (the kernel, another process, or `--busy` on a simulated chip).
    case lineBusy(Int)
    /// The operation does not apply to the line in its state (e.g. edge events on an output).
    case notPossible(Int, String)
    /// A system call on the host chip failed.
    case system(String, errno: Int32)

    public var description: String {
        switch self {
        case let .lineBusy(line): "line \(line) is in use on the host"
        case let .notPossible(line, why): "line \(line): \(why)"
        case let .system(call, errno): "\(call): \(String(cString: strerror(errno)))"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
