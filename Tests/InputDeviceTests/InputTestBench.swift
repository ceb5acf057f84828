import CInput
import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// An `InputDevice` whose group runs on the test's thread (`GroupHarness`), fed through the test's end
/// of a socket pair that stands for the evdev device (the test writes `struct input_event`s and reads
/// what the device writes back), or through a control socket.
final class InputBench {
    let device: InputDevice
    let harness: GroupHarness
    /// The test's end of the evdev stand-in (evdev benches).
    let host: OwnedDescriptor?
    /// The control socket's path (control benches).
    let controlPath: String?
    var eventq: FakeQueue { harness.queue(InputDevice.eventQueue) }
    var statusq: FakeQueue { harness.queue(InputDevice.statusQueue) }
    private var addresses: [UInt16: UInt64] = [:]
    private var free: [UInt64] = []

    /// A device of `description` fed through a socket pair.
    init(_ description: InputDeviceDescription = SyntheticKind.keyboard.description(), queueSize: Int = 64,
         bufferEvents: Int = 1024, maxBatch: Int = 64) throws {
        let (deviceEnd, testEnd) = try socketPair()
        device = InputDevice(description: description, source: .evdev(deviceEnd), bufferEvents: bufferEvents, maxBatch: maxBatch)
        harness = try GroupHarness(device: device, queueSize: queueSize)
        host = testEnd
        controlPath = nil
    }

    /// A synthetic device of `kind` fed through a control socket.
    init(kind: SyntheticKind, queueSize: Int = 64, bufferEvents: Int = 1024, maxBatch: Int = 64) throws {
        let path = temporaryPath("control")
        let description = kind.description()
        device = InputDevice(description: description,
                             source: .control(ControlServer(listener: try UnixListener(path: path), description: description)),
                             bufferEvents: bufferEvents, maxBatch: maxBatch)
        harness = try GroupHarness(device: device, queueSize: queueSize)
        host = nil
        controlPath = path
    }

    deinit {
        harness.finish()
        if let controlPath { unlink(controlPath) }
    }

    /// Offers the driver `count` eventq buffers of `size` bytes.
    func offer(_ count: Int, size: Int = InputEvent.size) {
        for _ in 0..<count {
            let address = size == InputEvent.size ? (free.popLast() ?? eventq.memory.allocate(size)) : eventq.memory.allocate(size)
            addresses[eventq.submit([.writable(address, size)])] = address
        }
    }

    /// The events the device completed since the last call (each used length checked to be 8).
    func received() -> [InputEvent] {
        eventq.takeUsed().map { used in
            let address = addresses[UInt16(used.id)]!
            #expect(used.length == UInt32(InputEvent.size))
            free.append(address)
            let bytes = eventq.memory.read(address, count: InputEvent.size)
            return InputEvent(packed: bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        }
    }

    /// Writes `events` as an evdev device would deliver them, and lets the group read them.
    func send(_ events: [InputEvent]) {
        var bytes = [UInt8](repeating: 0, count: Int(vhu_input_event_size()) * events.count)
        bytes.withUnsafeMutableBytes { buffer in
            for (i, event) in events.enumerated() {
                vhu_input_event_encode(vhu_input_event(type: event.type, code: event.code, value: event.value),
                                       buffer.baseAddress! + i * Int(vhu_input_event_size()))
            }
        }
        #expect(write(host!.rawValue, bytes, bytes.count) == bytes.count)
        turn()
    }

    /// Turns the group until it has nothing more to do now (ready descriptors included).
    func turn() {
        harness.run()
        harness.wait(milliseconds: 0)
        harness.run()
    }

    /// The status events the device wrote back to the evdev stand-in so far.
    func writtenBack() -> [InputEvent] {
        let size = Int(vhu_input_event_size())
        var events: [InputEvent] = []
        var buffer = [UInt8](repeating: 0, count: size * 64)
        while true {
            let n = recv(host!.rawValue, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard n > 0 else { return events }
            for offset in stride(from: 0, to: n, by: size) {
                let e = buffer.withUnsafeBytes { vhu_input_event_decode($0.baseAddress! + offset) }
                events.append(InputEvent(type: e.type, code: e.code, value: e.value))
            }
        }
    }

    /// Submits one statusq buffer with `bytes`.
    func status(_ bytes: [UInt8]) {
        let address = statusq.memory.allocate(max(bytes.count, 1))
        statusq.memory.write(bytes, at: address)
        statusq.submit([.readable(address, bytes.count)])
    }
}

/// A connected control client.
final class ControlClient {
    let socket: OwnedDescriptor
    private var pending: [UInt8] = []

    init(path: String) throws { socket = try UnixListener.connect(to: path) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        #expect(write(socket.rawValue, bytes, bytes.count) == bytes.count)
    }

    /// The next reply line, turning `bench` while it is not there (bounded).
    func reply(turning bench: InputBench, timeoutMilliseconds: Int = 5000) -> String? {
        let deadline = monotonicNanoseconds() / 1_000_000 + UInt64(timeoutMilliseconds)
        while monotonicNanoseconds() / 1_000_000 < deadline {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeFirst(newline + 1) }
                return String(decoding: pending[..<newline], as: UTF8.self)
            }
            bench.harness.wait(milliseconds: 10)
            bench.harness.run()
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(socket.rawValue, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 { pending += chunk[..<n] }
        }
        return nil
    }

    /// Sends `line` and returns its reply.
    func command(_ line: String, _ bench: InputBench) -> String? {
        send(line + "\n")
        return reply(turning: bench)
    }
}

func socketPair() throws -> (OwnedDescriptor, OwnedDescriptor) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw SystemError("socketpair", errno: errno)
    }
    _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
    return (OwnedDescriptor(fds[0]), OwnedDescriptor(fds[1]))
}

func temporaryPath(_ name: String) -> String {
    "/tmp/vhu-input-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// Shorthands for events.
func key(_ code: UInt16, _ value: Int32) -> InputEvent { InputEvent(type: EventType.key, code: code, value: value) }
func rel(_ code: UInt16, _ value: Int32) -> InputEvent { InputEvent(type: EventType.rel, code: code, value: value) }
func abs(_ code: UInt16, _ value: Int32) -> InputEvent { InputEvent(type: EventType.abs, code: code, value: value) }
let syn = InputEvent.synReport
let KEY_A: UInt16 = 30, KEY_B: UInt16 = 48, KEY_H: UInt16 = 35, KEY_LEFTSHIFT: UInt16 = 42, BTN_LEFT: UInt16 = 0x110
