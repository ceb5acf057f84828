import Testing
import VhostUserKit
import VhostUserTesting
@testable import GPIODevice
#if canImport(Glibc)
import Glibc
#endif

/// A gpio-sim chip (configfs, CONFIG_GPIO_SIM) made for one test: named lines whose inputs the test
/// pulls up or down through sysfs, as hardware would drive them.
final class GPIOSimChip {
    static let configfs = "/sys/kernel/config/gpio-sim"
    /// Why the passthrough tests cannot run here, or nil when they can.
    static let unavailableReason: String? = {
        if access(configfs, F_OK) == 0 { return nil }
        _ = system("modprobe gpio-sim >/dev/null 2>&1")
        if access(configfs, F_OK) == 0 { return nil }
        return "the host kernel has no gpio-sim (modprobe gpio-sim fails and \(configfs) is absent)"
    }()

    let directory: String
    let device: String
    let chipName: String

    init(names: [String]) throws {
        directory = "\(Self.configfs)/vhu-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Self.mkdir(directory)
        try Self.mkdir("\(directory)/bank0")
        try Self.write("\(names.count)", to: "\(directory)/bank0/num_lines")
        for (i, name) in names.enumerated() {
            try Self.mkdir("\(directory)/bank0/line\(i)")
            try Self.write(name, to: "\(directory)/bank0/line\(i)/name")
        }
        try Self.write("1", to: "\(directory)/live")
        chipName = try Self.read("\(directory)/bank0/chip_name")
        device = try Self.read("\(directory)/dev_name")
    }

    deinit {
        try? Self.write("0", to: "\(directory)/live")
        for line in 0..<64 { rmdir("\(directory)/bank0/line\(line)") }
        rmdir("\(directory)/bank0")
        rmdir(directory)
    }

    var path: String { "/dev/\(chipName)" }

    /// Pulls input `line` up or down (what drives it from outside).
    func pull(_ line: Int, high: Bool) throws {
        try Self.write(high ? "pull-up" : "pull-down", to: "/sys/devices/platform/\(device)/\(chipName)/sim_gpio\(line)/pull")
    }

    /// The level the chip's consumer drives on `line`.
    func value(_ line: Int) throws -> String {
        try Self.read("/sys/devices/platform/\(device)/\(chipName)/sim_gpio\(line)/value")
    }

    private static func mkdir(_ path: String) throws {
        guard Glibc.mkdir(path, 0o755) == 0 else { throw TestError("mkdir \(path): errno \(errno)") }
    }

    static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw TestError("open \(path): errno \(errno)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw TestError("write \(path): errno \(errno)") }
    }

    static func read(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TestError("open \(path): errno \(errno)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = Glibc.read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw TestError("read \(path): errno \(errno)") }
        return String(decoding: buffer[0..<n], as: UTF8.self).trimmingSuffix("\n")
    }
}

private extension String {
    func trimmingSuffix(_ suffix: Character) -> String { last == suffix ? String(dropLast()) : self }
}

private typealias T = GPIOTestBench

@Suite("vhost-user-gpio passing a gpio-sim chip through", .enabled(if: GPIOSimChip.unavailableReason == nil,
                                                                   Comment(rawValue: GPIOSimChip.unavailableReason ?? "")))
struct GPIOPassthroughTests {
    @Test("the chip's names, an output the host sees, an input the host pulls, and a rising edge as an interrupt")
    func passthrough() throws {
        let sim = try GPIOSimChip(names: ["out0", "in1", "in2", "spare"])
        let chip = try PassthroughChip(path: sim.path)
        #expect(chip.lineCount == 4 && chip.lineNames == ["out0", "in1", "in2", "spare"])
        let device = GPIODevice(chip: chip)
        let harness = try GroupHarness(device: device)
        defer { harness.finish() }
        let memory = harness.memory
        func request(_ type: UInt16, _ line: UInt16, _ value: UInt32 = 0) -> [UInt8] {
            let r = memory.allocate(8), s = memory.allocate(2)
            memory.write(T.header(type, line: line, value: value), at: r)
            harness.queue(0).submit([.readable(r, 8), .writable(s, 2)])
            harness.run()
            return memory.read(s, count: 2)
        }
        #expect(request(T.requestType.setDirection, 0, 1) == [T.ok, 0])
        #expect(request(T.requestType.setValue, 0, 1) == [T.ok, 0])
        #expect(try sim.value(0) == "1")
        #expect(request(T.requestType.setDirection, 1, 2) == [T.ok, 0])
        try sim.pull(1, high: true)
        #expect(request(T.requestType.getValue, 1) == [T.ok, 1])
        try sim.pull(1, high: false)
        #expect(request(T.requestType.setIRQType, 1, 1) == [T.ok, 0])
        let r = memory.allocate(2), s = memory.allocate(1)
        memory.write([1, 0], at: r)
        harness.queue(1).submit([.readable(r, 2), .writable(s, 1)])
        harness.run()
        #expect(harness.queue(1).takeUsed().isEmpty)
        try sim.pull(1, high: true)
        var used: [UInt32] = []
        for _ in 0..<100 where used.isEmpty {  // the edge event arrives on the line request's descriptor
            harness.wait(milliseconds: 20)
            used = harness.queue(1).takeUsed().map(\.length)
        }
        #expect(used == [1])
        #expect(memory.read(s, count: 1) == [T.valid])
        // Level high, emulated from both edges and the line's value: fires at once while high.
        #expect(request(T.requestType.setIRQType, 1, 0) == [T.ok, 0])
        #expect(request(T.requestType.setIRQType, 1, 4) == [T.ok, 0])
        harness.queue(1).submit([.readable(r, 2), .writable(s, 1)])
        harness.run()
        #expect(harness.queue(1).takeUsed().map(\.length) == [1])
        #expect(memory.read(s, count: 1) == [T.valid])
    }
}
