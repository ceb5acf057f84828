import CInput
import InputDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Passthrough of a real evdev device, made on the host through uinput: its config as the ioctls
/// report it, its events forwarded, the guest's LED events written back to it. Where /dev/uinput does
/// not exist the suite is skipped with that reason; the recorded touchpad (ConfigSpaceTests) covers
/// the same config path and the socket-pair benches the same event path.
@Suite("vhost-user-input passthrough (uinput)",
       .enabled(if: UInputDevice.available, "/dev/uinput does not exist on this host (load the uinput module): passthrough against a real evdev device skipped"))
struct PassthroughTests {
    @Test("a uinput tablet's config, events and LEDs pass through a grabbed evdev node")
    func uinputTablet() throws {
        let uinput = try UInputDevice(name: "vhost-user-test tablet", events: [
            (EventType.key, [0x110, 0x111]), (EventType.abs, [Axis.x, Axis.y]), (EventType.led, [0, 1]),
        ], axes: [Axis.x: .init(min: 0, max: 4095, fuzz: 0, flat: 0, res: 12), Axis.y: .init(min: -100, max: 100)],
           properties: [InputProperty.direct])
        let node = try EvdevNode(path: try uinput.eventNode())
        let description = try InputDeviceDescription(querying: node)
        #expect(description.name == "vhost-user-test tablet")
        #expect(description.ids == .init(bustype: 0x06, vendor: 0x1234, product: 0x5678, version: 1))
        #expect(description.properties == [InputProperty.direct])
        #expect(description.codes[EventType.key] == [0x110, 0x111])
        #expect(description.axes[Axis.x] == .init(min: 0, max: 4095, res: 12))
        #expect(description.axes[Axis.y] == .init(min: -100, max: 100))
        try node.grab()

        let device = InputDevice(description: description, source: .evdev(node.descriptor))
        let harness = try GroupHarness(device: device)
        defer { harness.finish() }
        let buffer = harness.queue(0).memory.allocate(64)
        for i in 0..<8 { harness.queue(0).submit([.writable(buffer + UInt64(8 * i), 8)]) }
        harness.run()
        try uinput.emit([abs(Axis.x, 4000), abs(Axis.y, -50), key(0x110, 1), syn])
        for _ in 0..<100 where harness.queue(0).publishedUsedIndex < 4 { harness.wait(milliseconds: 50) }
        #expect(harness.queue(0).takeUsed().count == 4)
        #expect(harness.queue(0).memory.read(buffer, count: 32) == [abs(Axis.x, 4000), abs(Axis.y, -50), key(0x110, 1), syn].flatMap(\.bytes))

        let led = harness.queue(1).memory.allocate(8)
        harness.queue(1).memory.write(InputEvent(type: EventType.led, code: 1, value: 1).bytes, at: led)
        harness.queue(1).submit([.readable(led, 8)])
        harness.run()
        #expect(try uinput.nextEvent(timeoutMilliseconds: 2000) == InputEvent(type: EventType.led, code: 1, value: 1))
    }
}

/// A host input device made through /dev/uinput, removed when this goes away.
final class UInputDevice {
    static var available: Bool { access("/dev/uinput", R_OK | W_OK) == 0 }
    let fd: Int32

    init(name: String, events: [(UInt16, [UInt16])], axes: [UInt16: InputDeviceDescription.AbsInfo], properties: [UInt16]) throws {
        fd = open("/dev/uinput", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open /dev/uinput", errno: errno) }
        for (type, codes) in events {
            guard vhu_uinput_set_bit(fd, 0, Int32(type)) == 0 else { throw SystemError("UI_SET_EVBIT", errno: errno) }
            for code in codes where vhu_uinput_set_bit(fd, Int32(type), Int32(code)) != 0 {
                throw SystemError("UI_SET_*BIT", errno: errno)
            }
        }
        for (axis, info) in axes {
            let setup = vhu_input_absinfo(minimum: info.min, maximum: info.max, fuzz: info.fuzz, flat: info.flat, resolution: info.res)
            guard vhu_uinput_abs_setup(fd, Int32(axis), setup) == 0 else { throw SystemError("UI_ABS_SETUP", errno: errno) }
        }
        for property in properties where vhu_uinput_set_prop(fd, Int32(property)) != 0 { throw SystemError("UI_SET_PROPBIT", errno: errno) }
        let ids: [UInt16] = [0x06, 0x1234, 0x5678, 1]
        guard vhu_uinput_create(fd, name, ids) == 0 else { throw SystemError("UI_DEV_CREATE", errno: errno) }
    }

    deinit {
        _ = vhu_uinput_destroy(fd)
        close(fd)
    }

    /// /dev/input/eventN of the device (from sysfs: /sys/devices/virtual/input/inputM/eventN).
    func eventNode() throws -> String {
        var name = [CChar](repeating: 0, count: 64)
        guard vhu_uinput_sysname(fd, &name, Int32(name.count)) >= 0 else { throw SystemError("UI_GET_SYSNAME", errno: errno) }
        let directory = "/sys/devices/virtual/input/" + String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for _ in 0..<100 {
            if let dir = opendir(directory) {
                defer { closedir(dir) }
                while let entry = readdir(dir) {
                    let entryName = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if entryName.hasPrefix("event"), access("/dev/input/\(entryName)", R_OK) == 0 { return "/dev/input/\(entryName)" }
                }
            }
            _ = poll(nil, 0, 20)  // udev/devtmpfs creates the node shortly after the device
        }
        throw SystemError("no event node for \(directory)", errno: ENOENT)
    }

    func emit(_ events: [InputEvent]) throws {
        let size = Int(vhu_input_event_size())
        var bytes = [UInt8](repeating: 0, count: size * events.count)
        bytes.withUnsafeMutableBytes { b in
            for (i, e) in events.enumerated() { vhu_input_event_encode(vhu_input_event(type: e.type, code: e.code, value: e.value), b.baseAddress! + i * size) }
        }
        guard write(fd, bytes, bytes.count) == bytes.count else { throw SystemError("write /dev/uinput", errno: errno) }
    }

    /// The next event written to the device (an LED the passthrough set), skipping uinput's own requests.
    func nextEvent(timeoutMilliseconds: Int32) throws -> InputEvent? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(vhu_input_event_size()))
        guard read(fd, &bytes, bytes.count) == bytes.count else { throw SystemError("read /dev/uinput", errno: errno) }
        let e = bytes.withUnsafeBytes { vhu_input_event_decode($0.baseAddress!) }
        return InputEvent(type: e.type, code: e.code, value: e.value)
    }
}
