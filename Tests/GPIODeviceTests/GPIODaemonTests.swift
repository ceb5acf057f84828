import Testing
import VhostUserKit
import VhostUserTesting
@testable import GPIODevice
#if canImport(Glibc)
import Glibc
#endif

private typealias T = GPIOTestBench

/// Sends one command line to a control socket served by a daemon's worker and waits (bounded) for
/// the reply line.
func controlCommand(_ command: String, on socket: OwnedDescriptor, timeoutMilliseconds: Int32 = 5000) throws -> String {
    let bytes = Array((command + "\n").utf8)
    guard send(socket.rawValue, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TestError("control write failed") }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 256)
    while reply.last != UInt8(ascii: "\n") {
        var pfd = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMilliseconds) == 1 else { throw TestError("no reply to \"\(command)\"") }
        let n = read(socket.rawValue, &chunk, chunk.count)
        guard n > 0 else { throw TestError("control socket closed") }
        reply += chunk[0..<n]
    }
    return String(decoding: reply.dropLast(), as: UTF8.self)
}

@Suite("vhost-user-gpio served by a daemon: config, requests and interrupts on the worker thread")
struct GPIODaemonTests {
    @Test("every VMM's message order: config space, GET_NAMES, and an interrupt raised through the control socket",
          arguments: [FrontendProfile.qemu, .cloudHypervisor, .crosvm])
    func servedToEveryFrontend(profile: FrontendProfile) throws {
        let path = "/tmp/vhu-gpio-daemon-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let chip = try SimulatedChip(layout: T.defaultLayout, controlSocketPath: path)
        let d = try DeviceFixture(GPIODevice(chip: chip), profile: profile, queueSizes: [16, 16])
        #expect(d.features & VirtioGPIO.featureIRQ != 0)
        #expect(try d.frontend.getConfig(offset: 0, count: 8).data == [8, 0, 0, 0, 24, 0, 0, 0])
        let memory = d.memory, requestq = d.queues[0], eventq = d.queues[1]

        func request(_ type: UInt16, line: UInt16, value: UInt32 = 0, responseSize: Int = 2) throws -> [UInt8] {
            let r = memory.allocate(8), s = memory.allocate(responseSize)
            memory.write(T.header(type, line: line, value: value), at: r)
            requestq.submit([.readable(r, 8), .writable(s, responseSize)])
            requestq.notifyDevice()
            let used = try requestq.waitForUsed(1)
            #expect(used.count == 1)
            return memory.read(s, count: Int(used[0].length))
        }
        #expect(try request(T.requestType.getNames, line: 0, responseSize: 25) == [T.ok] + Array("led\0button\0out2\0in3\0\0\0\0\0".utf8))
        #expect(try request(T.requestType.setDirection, line: 5, value: 2) == [T.ok, 0])
        #expect(try request(T.requestType.setIRQType, line: 5, value: 1) == [T.ok, 0])
        // Unknown type and out-of-range line: ERR, and the daemon goes on.
        #expect(try request(0x77, line: 5) == [T.error, 0])
        #expect(try request(T.requestType.getValue, line: 200) == [T.error, 0])

        let r = memory.allocate(2), s = memory.allocate(1)
        memory.write([5, 0], at: r)
        memory.write([0xee], at: s)
        eventq.submit([.readable(r, 2), .writable(s, 1)])
        eventq.notifyDevice()
        let control = try UnixListener.connect(to: path)
        #expect(try controlCommand("get 5", on: control) == "0")
        #expect(eventq.takeUsed().isEmpty)
        // Whether the worker took the eventq buffer before or after the edge, it fires: an edge is latched.
        #expect(try controlCommand("set 5 1", on: control) == "ok")
        let used = try eventq.waitForUsed(1)
        #expect(used.map(\.length) == [1])
        #expect(memory.read(s, count: 1) == [T.valid])
        #expect(try request(T.requestType.getValue, line: 5) == [T.ok, 1])
    }

    @Test("an interrupt a request raises (an output driving its loopback partner) reaches the driver without an eventq kick")
    func loopbackInterruptIsPublished() throws {
        let d = try DeviceFixture(GPIODevice(chip: try SimulatedChip(layout: T.defaultLayout)), queueSizes: [16, 16])
        let memory = d.memory, requestq = d.queues[0], eventq = d.queues[1]
        func request(_ type: UInt16, line: UInt16, value: UInt32) throws {
            let r = memory.allocate(8), s = memory.allocate(2)
            memory.write(T.header(type, line: line, value: value), at: r)
            requestq.submit([.readable(r, 8), .writable(s, 2)])
            requestq.notifyDevice()
            _ = try requestq.waitForUsed(1)
            #expect(memory.read(s, count: 2) == [T.ok, 0])
        }
        try request(T.requestType.setDirection, line: 1, value: 2)
        try request(T.requestType.setIRQType, line: 1, value: 1)
        let r = memory.allocate(2), s = memory.allocate(1)
        memory.write([1, 0], at: r)
        eventq.submit([.readable(r, 2), .writable(s, 1)])
        eventq.notifyDevice()
        // The eventq buffer is held by the turn after the one that answers this request at the latest.
        try request(T.requestType.setDirection, line: 0, value: 1)
        #expect(eventq.takeUsed().isEmpty)
        try request(T.requestType.setValue, line: 0, value: 1)
        #expect(try eventq.waitForUsed(1, timeoutMilliseconds: 2000).map(\.length) == [1])
        #expect(memory.read(s, count: 1) == [T.valid])
    }

    @Test("a path that is not a GPIO chip is refused at start-up with the reason")
    func passthroughRefusesNonChips() throws {
        #expect(throws: GPIOChipError.system("open /nonexistent/gpiochip9", errno: ENOENT)) {
            try PassthroughChip(path: "/nonexistent/gpiochip9")
        }
        #expect(throws: GPIOChipError.self) { try PassthroughChip(path: "/dev/null") }
    }
}
