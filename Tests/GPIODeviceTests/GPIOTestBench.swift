import GPIODevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// A virtio-gpio device on a simulated chip, its queue group turned on the test's thread
/// (`GroupHarness`), with helpers that build requestq and eventq buffers in guest memory.
final class GPIOTestBench {
    static let requestType = (getNames: UInt16(1), getDirection: UInt16(2), setDirection: UInt16(3),
                              getValue: UInt16(4), setValue: UInt16(5), setIRQType: UInt16(6))
    static let ok: UInt8 = 0, error: UInt8 = 1
    static let invalid: UInt8 = 0, valid: UInt8 = 1

    let device: GPIODevice
    let harness: GroupHarness
    let controlPath: String?
    var memory: FakeGuestMemory { harness.memory }
    var requestq: FakeQueue { harness.queue(0) }
    var eventq: FakeQueue { harness.queue(1) }

    /// Lines 0 and 1 wired together, 2 and 3 too; line 7 busy; names for lines 0-3 only.
    static let defaultLayout = try! SimulatedChipLayout(lineCount: 8, names: ["led", "button", "out2", "in3"],
                                                         loopbacks: [(0, 1), (2, 3)], busy: [7])

    init(layout: SimulatedChipLayout = defaultLayout, control: Bool = false, interrupts: Bool = true,
         features: UInt64? = nil) throws {
        controlPath = control ? "/tmp/vhu-gpio-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock" : nil
        device = GPIODevice(chip: try SimulatedChip(layout: layout, controlSocketPath: controlPath), interrupts: interrupts)
        harness = try GroupHarness(device: device, features: features)
    }

    deinit {
        harness.finish()
        if let controlPath { unlink(controlPath) }
    }

    /// The request header bytes.
    static func header(_ type: UInt16, line: UInt16, value: UInt32) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian, Array.init) + withUnsafeBytes(of: line.littleEndian, Array.init)
            + withUnsafeBytes(of: value.littleEndian, Array.init)
    }

    /// Sends `request` bytes with a response buffer of `responseSize` and runs the group: the used
    /// length and the response buffer's bytes.
    func raw(_ request: [UInt8], responseSize: Int = 2) -> (length: UInt32, response: [UInt8]) {
        var buffers: [BufferSpec] = []
        if !request.isEmpty {
            let r = memory.allocate(request.count)
            memory.write(request, at: r)
            buffers.append(.readable(r, request.count))
        }
        let response = memory.allocate(max(responseSize, 1))
        memory.write([UInt8](repeating: 0xee, count: max(responseSize, 1)), at: response)
        if responseSize > 0 { buffers.append(.writable(response, responseSize)) }
        requestq.submit(buffers)
        harness.run()
        let used = requestq.takeUsed()
        precondition(used.count == 1, "expected one completion, got \(used.count)")
        return (used[0].length, memory.read(response, count: responseSize))
    }

    /// One request: (status, value) and the used length.
    @discardableResult
    func request(_ type: UInt16, line: UInt16, value: UInt32 = 0) -> (status: UInt8, value: UInt8, length: UInt32) {
        let (length, response) = raw(Self.header(type, line: line, value: value))
        return (response[0], response[1], length)
    }

    /// An eventq buffer for `line` (a request of `requestSize` bytes); returns its head and the address of
    /// its status byte (0xee until the device writes it).
    @discardableResult
    func queueEvent(line: UInt16, requestSize: Int = 2, responseSize: Int = 1) -> (head: UInt16, status: UInt64) {
        var buffers: [BufferSpec] = []
        let bytes = withUnsafeBytes(of: line.littleEndian, Array.init) + [UInt8](repeating: 0, count: max(0, requestSize - 2))
        let r = memory.allocate(max(requestSize, 1))
        memory.write(Array(bytes.prefix(requestSize)), at: r)
        if requestSize > 0 { buffers.append(.readable(r, requestSize)) }
        let status = memory.allocate(max(responseSize, 1))
        memory.write([0xee], at: status)
        if responseSize > 0 { buffers.append(.writable(status, responseSize)) }
        let head = eventq.submit(buffers)
        harness.run()
        return (head, status)
    }

    /// The eventq buffers used since the last call: (head, used length, status byte).
    func firedEvents(_ buffers: [(head: UInt16, status: UInt64)]) -> [(head: UInt16, length: UInt32, status: UInt8)] {
        eventq.takeUsed().map { used in
            let status = buffers.first { UInt32($0.head) == used.id }.map { memory.read($0.status, count: 1)[0] } ?? 0xee
            return (UInt16(used.id), used.length, status)
        }
    }

    /// Drives input `line` through its loopback partner `output` (configured as an output first).
    func drive(output: UInt16, _ level: Bool) {
        request(Self.requestType.setDirection, line: output, value: 1)
        request(Self.requestType.setValue, line: output, value: level ? 1 : 0)
    }

    /// Enables `trigger` on `line` (an input).
    @discardableResult
    func enable(_ trigger: UInt32, line: UInt16) -> UInt8 {
        request(Self.requestType.setDirection, line: line, value: 2)
        return request(Self.requestType.setIRQType, line: line, value: trigger).status
    }

    // MARK: Control socket

    /// Sends one control command and turns the group until its reply line arrives (bounded).
    func control(_ command: String, on socket: OwnedDescriptor) throws -> String {
        let bytes = Array((command + "\n").utf8)
        guard send(socket.rawValue, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TestError("control write failed") }
        var reply: [UInt8] = []
        for _ in 0..<500 {
            harness.wait(milliseconds: 10)
            var chunk = [UInt8](repeating: 0, count: 256)
            var pfd = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            while poll(&pfd, 1, 0) == 1 {
                let n = read(socket.rawValue, &chunk, chunk.count)
                guard n > 0 else { throw TestError("control socket closed") }
                reply += chunk[0..<n]
                if reply.last == UInt8(ascii: "\n") { return String(decoding: reply.dropLast(), as: UTF8.self) }
            }
        }
        throw TestError("no reply to \"\(command)\" within 5 s")
    }

    func connectControl() throws -> OwnedDescriptor { try UnixListener.connect(to: controlPath!) }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
