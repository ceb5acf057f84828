import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A GPIO chip in memory: named lines, loopback pairs (an output drives its partner's input, which
/// may raise the partner's interrupt), lines the host keeps (refused), and an optional control socket
/// through which a host script drives inputs (`ControlCommand`). Inputs start low; lines start as
/// inputs.
public final class SimulatedChip: GPIOChip {
    public let layout: SimulatedChipLayout
    public var lineCount: Int { layout.lineCount }
    public var lineNames: [String] { layout.names }

    private struct Line {
        var direction = LineDirection.input
        var output = false
        /// What drives the line from outside: the control socket or a loopback partner.
        var input = false
    }
    private var lines: [Line]
    private let control: ControlServer?
    private weak var events: (any GPIOChipEvents)?

    /// A chip laid out as `layout`, with a control socket at `controlSocketPath` when given (created
    /// now, so a bad path fails at start-up).
    public init(layout: SimulatedChipLayout, controlSocketPath: String? = nil) throws(UnixSocketError) {
        self.layout = layout
        lines = [Line](repeating: Line(), count: layout.lineCount)
        control = try controlSocketPath.map { (path) throws(UnixSocketError) in try ControlServer(path: path) }
        control?.chip = self
    }

    public func attach(_ events: any GPIOChipEvents) {
        self.events = events
        control?.attach(events)
    }

    public func detach() {
        events = nil
        control?.detach()
    }

    public func ready(_ fd: Int32) { control?.ready(fd) }

    public func direction(of line: Int) throws(GPIOChipError) -> LineDirection {
        try checkFree(line)
        return lines[line].direction
    }

    public func setDirection(_ direction: LineDirection, of line: Int) throws(GPIOChipError) {
        try checkFree(line)
        lines[line].direction = direction
        if direction == .none { lines[line].output = false }
        drivePartner(of: line)
    }

    public func value(of line: Int) throws(GPIOChipError) -> Bool {
        try checkFree(line)
        return level(line)
    }

    public func setValue(_ value: Bool, of line: Int) throws(GPIOChipError) {
        try checkFree(line)
        lines[line].output = value
        drivePartner(of: line)
    }

    /// A simulated chip reports every input change: nothing to switch.
    public func setChangeReports(_ enabled: Bool, of line: Int) throws(GPIOChipError) { try checkFree(line) }

    public func reset() {
        for i in lines.indices {
            lines[i].direction = .input
            lines[i].output = false
        }
        for pair in layout.loopbackPairs where lines[pair.a].input || lines[pair.b].input {
            setInput(pair.a, false)
            setInput(pair.b, false)
        }
    }

    /// Runs one control command and returns its reply line.
    func run(_ command: ControlCommand) throws(ControlCommandError) -> String {
        switch command {
        case let .set(reference, value):
            setInput(try resolve(reference), value)
            return "ok"
        case let .get(reference):
            return level(try resolve(reference)) ? "1" : "0"
        case let .direction(reference):
            return lines[try resolve(reference)].direction.description
        }
    }

    // MARK: Lines

    private func level(_ line: Int) -> Bool {
        lines[line].direction == .output ? lines[line].output : lines[line].input
    }

    private func checkFree(_ line: Int) throws(GPIOChipError) {
        if layout.busy.contains(line) { throw .lineBusy(line) }
    }

    /// A loopback partner's input follows this line while it is an output.
    private func drivePartner(of line: Int) {
        guard lines[line].direction == .output, let partner = layout.partner(of: line) else { return }
        setInput(partner, lines[line].output)
    }

    private func setInput(_ line: Int, _ value: Bool) {
        guard lines[line].input != value else { return }
        lines[line].input = value
        events?.lineChanged(line, level: value)
    }

    private func resolve(_ reference: ControlCommand.LineReference) throws(ControlCommandError) -> Int {
        let line: Int
        switch reference {
        case let .number(n):
            guard n >= 0, n < lineCount else { throw .noSuchLine(String(n)) }
            line = n
        case let .name(name):
            guard !name.isEmpty, let n = layout.names.firstIndex(of: name) else { throw .noSuchLine(name) }
            line = n
        }
        if layout.busy.contains(line) { throw .lineBusy(line) }
        return line
    }
}
