import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A virtio console (device id 3) with SIZE, MULTIPORT and EMERG_WRITE: several named ports, each
/// with a host side of its own (a terminal, a pty, a unix or tcp socket clients attach to, a log
/// file), port 0 being the console (`hvc0`). Every queue is one group: the control queues open and
/// close ports, and the host descriptors are watched on the same worker.
///
/// Flow control: host input is read only while a port's input buffer has room, so a slow guest
/// stops the host side instead of losing bytes. Guest output goes to a bounded buffer
/// (`Options.bufferBytes`) per port; while it is full, the port's transmit queue is not served, so a
/// slow or absent host reader stops the guest. The console port is the exception when no host peer
/// is attached at all (a unix or tcp backend without a client): the guest's console driver spins
/// until its buffers come back, so the console keeps serving them and keeps the newest
/// `bufferBytes`, logging once each time it starts dropping.
public final class ConsoleDevice: VhostUserDevice {
    public struct Options: Sendable {
        /// Guest output held per port while the host does not read it (see the type's comment).
        public var bufferBytes: Int = 64 << 10
        /// Host input read ahead per port while the guest does not take it.
        public var inputBytes: Int = 64 << 10
        /// The size reported before any terminal or resize request says otherwise.
        public var initialSize: ConsoleSize = .default
        /// How often a pty console's window size is looked at (a pty's master gets no SIGWINCH).
        public var ptySizeInterval: Duration = .milliseconds(500)
        /// max_nr_ports (at least the number of ports): the queues exist for this many.
        public var maxPorts: Int?
        public init() {}
    }

    /// A port as the device is made with: its name in the guest and its opened host side.
    public struct Port: Sendable {
        public var name: String
        public var endpoint: HostEndpoint
        public init(name: String, endpoint: HostEndpoint) {
            self.name = name
            self.endpoint = endpoint
        }
    }

    public let options: Options
    public let portCount: Int
    let maxPorts: Int
    let logger: Logger

    /// What the running handler borrows: the ports and the console's own host descriptors.
    let state: Locked<ConsoleState?>
    private let waker = Locked<GroupWaker?>(nil)
    /// The size in the config space (port 0's terminal).
    let size: Locked<ConsoleSize>
    /// Characters written to emerg_wr, for port 0's output.
    let emergency = Locked<[UInt8]>([])
    /// Sizes asked for from another thread (`resize`), applied by the handler.
    private let requestedSize = Locked<ConsoleSize?>(nil)
    /// Bumped by every device reset; a handler compares it with the one it saw.
    private let resets = Locked<Int>(0)
    private let backendChannel = Locked<BackendChannel?>(nil)
    /// Errors the device reported (the newest `recentErrorLimit`), for tests and diagnostics.
    private let errors = Locked<[String]>([])
    static let recentErrorLimit = 64
    /// Emergency characters held while port 0's group does not run.
    static let emergencyLimit = 4096

    /// A console with `ports` (port 0 first, the console) and an optional listening unix socket for
    /// resize requests (`ResizeControl`).
    public init(ports: [Port], options: Options = Options(), resizeControl: OwnedDescriptor? = nil,
                logger: Logger = Logger(label: "vhost-user-console")) throws(ConsoleSetupError) {
        guard !ports.isEmpty else { throw .init("a console needs at least one port") }
        let maxPorts = options.maxPorts ?? ports.count
        guard maxPorts >= ports.count, maxPorts <= 64 else { throw .init("max ports \(maxPorts): between the number of ports (\(ports.count)) and 64") }
        var names = Set<String>()
        for port in ports where !port.name.isEmpty {
            guard names.insert(port.name).inserted else { throw .init("two ports are named \(port.name)") }
        }
        guard options.bufferBytes > 0, options.inputBytes > 0 else { throw .init("buffer sizes must be positive") }
        self.options = options
        self.portCount = ports.count
        self.maxPorts = maxPorts
        self.logger = logger
        let states = ports.enumerated().map { id, port in
            PortState(id: id, name: port.name, endpoint: port.endpoint,
                      outputBytes: options.bufferBytes + ConsoleHandler.chainAllowance, inputBytes: options.inputBytes)
        }
        let signals = ports[0].endpoint.kind == .stdio && ports[0].endpoint.terminal != nil ? WindowSignals.make() : nil
        state = Locked(ConsoleState(ports: states, resizeControl: resizeControl.map { ResizeControl(listener: $0) },
                                    windowSignals: signals))
        size = Locked(ports[0].endpoint.terminal.flatMap(windowSize) ?? options.initialSize)
    }

    public var virtioDeviceID: UInt32 { VirtioConsole.deviceID }
    public var deviceFeatures: UInt64 {
        VirtioConsole.featureSize | VirtioConsole.featureMultiport | VirtioConsole.featureEmergencyWrite
    }
    public var queueCount: Int { VirtioConsole.queueCount(maxPorts: maxPorts) }
    public var maxQueueSize: Int { 1024 }
    public var configSize: Int { VirtioConsole.configSize }
    public var queueGroups: [[Int]] { [Array(0..<queueCount)] }

    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        ConsoleHandler(device: self, multiport: features & VirtioConsole.featureMultiport != 0)
    }

    // MARK: Config space

    /// cols, rows, max_nr_ports, emerg_wr (reads 0), little-endian.
    public var config: [UInt8] {
        let current = currentSize
        return littleEndianBytes(current.cols) + littleEndianBytes(current.rows) + littleEndianBytes(UInt32(maxPorts)) + [0, 0, 0, 0]
    }

    public func readConfig(offset: Int, count: Int) -> [UInt8] {
        let bytes = config
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            report("config read of \(count) bytes at offset \(offset) is outside the \(bytes.count)-byte config space")
            return [UInt8](repeating: 0, count: max(0, count))
        }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Only emerg_wr is writable: a write starting there outputs its low byte on port 0.
    public func writeConfig(offset: Int, bytes: [UInt8]) throws {
        guard offset == VirtioConsole.emergencyWriteOffset, !bytes.isEmpty, bytes.count <= 4 else {
            report("config write of \(bytes.count) bytes at offset \(offset) refused: only emerg_wr (offset 8) is writable")
            throw DeviceError.readOnlyConfig
        }
        let kept = emergency.withLock { pending -> Bool in
            guard pending.count < Self.emergencyLimit else { return false }
            pending.append(bytes[0])
            return true
        }
        if !kept { report("emergency write dropped: \(Self.emergencyLimit) characters already wait for port 0") }
        waker.withLock { $0 }?.wake()
    }

    public var currentSize: ConsoleSize { size.withLock { $0 } }

    // MARK: From any thread

    /// Sets the console's size as a resize request would (e.g. from an embedding program).
    public func resize(to newSize: ConsoleSize) {
        requestedSize.withLock { $0 = newSize }
        waker.withLock { $0 }?.wake()
    }

    /// The newest errors the device reported (bad control messages, refused config accesses...).
    public var recentErrors: [String] { errors.withLock { $0 } }

    public func backendChannelChanged(_ channel: BackendChannel?) { backendChannel.withLock { $0 = channel } }

    public func reset() {
        resets.withLock { $0 += 1 }
        waker.withLock { $0 }?.wake()
    }

    public func statusChanged(_ status: UInt8) {
        if status == 0 { reset() }
    }

    // MARK: For the handler

    func report(_ message: String) {
        logger.warning("\(message)")
        errors.withLock { list in
            if list.count == Self.recentErrorLimit { list.removeFirst() }
            list.append(message)
        }
    }

    func lend(to waker: GroupWaker) -> ConsoleState {
        self.waker.withLock { $0 = waker }
        return state.withLock { s in defer { s = nil }; return s! }
    }

    func takeBack(_ borrowed: ConsoleState) {
        waker.withLock { $0 = nil }
        state.withLock { $0 = borrowed }
    }

    var resetCount: Int { resets.withLock { $0 } }
    func takeEmergencyBytes() -> [UInt8] { emergency.withLock { p in defer { p.removeAll() }; return p } }
    func takeRequestedSize() -> ConsoleSize? { requestedSize.withLock { s in defer { s = nil }; return s } }

    /// Records the new size in the config space; returns whether it changed.
    func setSize(_ newSize: ConsoleSize) -> Bool {
        size.withLock { s in
            guard s != newSize else { return false }
            s = newSize
            return true
        }
    }

    /// Tells a single-port driver the size changed (a config interrupt through the front-end).
    func signalConfigChange() {
        backendChannel.withLock { $0 }?.post(.configChangeMsg)
    }
}

/// Everything a running handler borrows from the device.
final class ConsoleState: @unchecked Sendable {  // handed between the device and its one running handler under a lock
    let ports: [PortState]
    let resizeControl: ResizeControl?
    let windowSignals: WindowSignals?
    /// Control messages waiting for a buffer on the control receive queue.
    var controlOut: [ConsoleControlMessage] = []
    /// The device reset count this state reflects.
    var resetsSeen = 0

    init(ports: [PortState], resizeControl: ResizeControl?, windowSignals: WindowSignals?) {
        self.ports = ports
        self.resizeControl = resizeControl
        self.windowSignals = windowSignals
    }
}

/// A terminal's window size (TIOCGWINSZ), nil when it is not a terminal or reports no size.
func windowSize(_ fd: Int32) -> ConsoleSize? {
    var ws = winsize()
    guard ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 else { return nil }
    return ConsoleSize(cols: ws.ws_col, rows: ws.ws_row)
}
