import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

extension KitTests {
    /// Queue groups: one worker, one handler and one epoll set for several queues, host descriptors and
    /// timers (`SocketEchoDevice` is the example device).
    @Suite("Queue groups")
    struct QueueGroupTests {
        /// A running `SocketEchoDevice` with both queues up, and the test's end of its host socket.
        struct EchoBench {
            let fixture: DeviceFixture<SocketEchoDevice>
            var device: SocketEchoDevice { fixture.device }
            var daemon: InProcessDaemon { fixture.daemon }
            var frontend: FakeFrontend { fixture.frontend }
            var transmit: FakeQueue { fixture.queues[0] }
            var receive: FakeQueue { fixture.queues[1] }
            let host: OwnedDescriptor

            init(flushDelay: Duration = .milliseconds(50)) throws {
                let (deviceEnd, testEnd) = try socketPair()
                fixture = try DeviceFixture(SocketEchoDevice(socket: deviceEnd, flushDelay: flushDelay), queueSizes: [16, 16])
                host = testEnd
                let device = fixture.device
                #expect(waitUntil { device.entries.suffix(3) == ["start [0, 1]", "process 0", "process 1"] })
            }

            /// Offers the driver a receive buffer of `size` bytes and returns its guest address.
            func offerReceiveBuffer(_ size: Int = 64, kick: Bool = true) -> UInt64 {
                let buffer = receive.memory.allocate(size)
                receive.submit([.writable(buffer, size)])
                if kick { receive.notifyDevice() }
                return buffer
            }

            /// Transmits `bytes` from the driver and returns what reached the host socket.
            func transmitted(_ bytes: [UInt8]) throws -> [UInt8] {
                let buffer = transmit.memory.allocate(bytes.count)
                transmit.memory.write(bytes, at: buffer)
                transmit.submit([.readable(buffer, bytes.count)])
                transmit.notifyDevice()
                #expect(try transmit.waitForUsed(1).first?.length == 0)
                return try readHost(host, count: bytes.count)
            }
        }

        @Test("a kick on either member wakes the group's handler with that queue")
        func kickOnEitherMember() throws {
            let bench = try EchoBench()
            defer { bench.daemon.stop() }
            bench.device.log.withLock { $0.removeAll() }
            #expect(try bench.transmitted(Array("ping".utf8)) == Array("ping".utf8))
            #expect(bench.device.entries.filter { $0.hasPrefix("process") } == ["process 0"])

            // Host bytes with no receive buffer: the handler holds them; the driver's kick on queue 1 brings them in.
            let sent = pattern(20)
            #expect(write(bench.host.rawValue, sent, sent.count) == sent.count)
            #expect(waitUntil { bench.device.entries.contains("process 1") })
            let buffer = bench.offerReceiveBuffer()
            let used = try bench.receive.waitForUsed(1)
            #expect(used.first?.length == 20)
            #expect(bench.receive.memory.read(buffer, count: 20) == sent)
            #expect(bench.device.entries.suffix(1) == ["process 1"])
        }

        @Test("a timer fires once, at about its deadline: bytes below the batch size wait for the quiet time")
        func timerDeliversAfterQuietTime() throws {
            let bench = try EchoBench(flushDelay: .milliseconds(80))
            defer { bench.daemon.stop() }
            let buffer = bench.offerReceiveBuffer()
            let start = nowMilliseconds()
            #expect(write(bench.host.rawValue, "abc", 3) == 3)
            let used = try bench.receive.waitForUsed(1)
            let elapsed = nowMilliseconds() - start
            #expect(used.first?.length == 3)
            #expect(bench.receive.memory.read(buffer, count: 3) == Array("abc".utf8))
            #expect(elapsed >= 80 && elapsed < 1000, "delivered after \(elapsed) ms")
            #expect(bench.device.entries.filter { $0 == "timer" }.count == 1)
        }

        @Test("another thread attaches a new socket: the running group drops the old one and watches the new one")
        func attachWhileRunning() throws {
            let bench = try EchoBench()
            defer { bench.daemon.stop() }
            let buffer = bench.offerReceiveBuffer()
            let (deviceEnd, newHost) = try socketPair()
            let old = bench.host
            bench.device.attach(deviceEnd)
            #expect(waitUntil { bench.device.entries.contains("wake") })
            #expect(try barrierThroughTransmit(bench, newHost))
            // The device let go of the old socket (our end sees the peer gone) and reads the new one.
            let fresh = pattern(32, seed: 2)
            #expect(send(old.rawValue, "x", 1, Int32(MSG_NOSIGNAL)) == -1 && errno == EPIPE)
            #expect(write(newHost.rawValue, fresh, fresh.count) == fresh.count)
            let used = try bench.receive.waitForUsed(1)
            #expect(used.first?.length == 32)
            #expect(bench.receive.memory.read(buffer, count: 32) == fresh)
        }

        /// Transmits through the group after a change: true once the bytes reach `host`.
        private func barrierThroughTransmit(_ bench: EchoBench, _ host: OwnedDescriptor) throws -> Bool {
            let bytes = Array("after-attach".utf8)
            let buffer = bench.transmit.memory.allocate(bytes.count)
            bench.transmit.memory.write(bytes, at: buffer)
            bench.transmit.submit([.readable(buffer, bytes.count)])
            bench.transmit.notifyDevice()
            _ = try bench.transmit.waitForUsed(1)
            return try readHost(host, count: bytes.count) == bytes
        }

        @Test("a member stops and restarts while the other runs; the device's state survives the restart")
        func memberRestartsWhileOtherRuns() throws {
            let bench = try EchoBench()
            defer { bench.daemon.stop() }
            let f = bench.frontend
            let base = try f.getVringBase(SocketEchoDevice.receiveQueue)
            #expect(waitUntil { bench.device.entries.suffix(3) == ["stop", "start [0]", "process 0"] })
            #expect(try bench.transmitted(Array("still".utf8)) == Array("still".utf8))

            // Host bytes arrive while the receive queue is stopped: the handler of [0] keeps them.
            let sent = pattern(24, seed: 5)
            #expect(write(bench.host.rawValue, sent, sent.count) == sent.count)
            #expect(waitUntil { bench.device.entries.last == "ready" })
            try f.setVringBase(SocketEchoDevice.receiveQueue, base)
            try f.setVringKick(SocketEchoDevice.receiveQueue, bench.receive.kick)
            try barrier(f)
            #expect(waitUntil { bench.device.entries.suffix(4) == ["stop", "start [0, 1]", "process 0", "process 1"] })
            let buffer = bench.offerReceiveBuffer()
            #expect(try bench.receive.waitForUsed(1).first?.length == 24)
            #expect(bench.receive.memory.read(buffer, count: 24) == sent)
        }

        @Test("an idle group with a watched socket and a pending timer uses no CPU")
        func idleGroupSleeps() throws {
            let bench = try EchoBench(flushDelay: .seconds(30))
            defer { bench.daemon.stop() }
            #expect(write(bench.host.rawValue, "x", 1) == 1)  // arms the 30 s timer
            #expect(waitUntil { bench.device.entries.last == "ready" })
            let before = try #require(workerCPUTicks())
            var second = timespec(tv_sec: 1, tv_nsec: 0)
            nanosleep(&second, nil)  // the measurement window, not synchronisation
            let used = try #require(workerCPUTicks()) - before
            #expect(used <= 2, "the idle worker used \(used * 10) ms of CPU in a second")
        }

        // MARK: Driven on the test's thread

        @Test("timers: each fires once, in deadline order, never early; a cancelled one never fires")
        func timersOnHarness() throws {
            let probe = TimerProbe()
            let harness = try GroupHarness(device: ProbeDevice(handler: probe))
            let start = monotonicNanoseconds()
            let late = harness.group.schedule(after: .milliseconds(40))
            let early = harness.group.schedule(after: .milliseconds(20))
            let cancelled = harness.group.schedule(after: .milliseconds(10))
            #expect(harness.group.cancel(cancelled))
            while probe.fired.count < 2 && monotonicNanoseconds() - start < 2_000_000_000 { harness.wait(milliseconds: 100) }
            #expect(probe.fired.map(\.timer) == [early, late])
            #expect(probe.fired[0].at - start >= 20_000_000)
            #expect(probe.fired[1].at - start >= 40_000_000)
            #expect(!harness.group.cancel(late), "a fired timer is gone")
            harness.wait(milliseconds: 30)
            #expect(probe.fired.count == 2)
        }

        @Test("the waker works from another thread, and a watch added and removed while running")
        func wakerAndWatchOnHarness() throws {
            let probe = TimerProbe()
            let harness = try GroupHarness(device: ProbeDevice(handler: probe))
            let waker = harness.group.waker
            let thread = PosixThread { waker.wake() }
            thread.join()
            harness.wait(milliseconds: 1000)
            #expect(probe.wakes == 1)

            let signal = try EventFD()
            probe.signal = signal
            let watch = try harness.group.watch(signal.rawValue, for: .readable)
            signal.signal()
            harness.wait(milliseconds: 1000)
            #expect(probe.ready == [watch])
            harness.group.unwatch(watch)
            harness.wait(milliseconds: 20)
            #expect(probe.ready == [watch], "an unwatched descriptor is not reported")
        }
    }
}

/// A device with one queue whose group handler only records events.
final class ProbeDevice: VhostUserDevice {
    let handler: TimerProbe
    init(handler: TimerProbe) { self.handler = handler }
    var virtioDeviceID: UInt32 { 0x7ffd }
    var deviceFeatures: UInt64 { 0 }
    var queueCount: Int { 1 }
    var maxQueueSize: Int { 64 }
    func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler { handler }
}

final class TimerProbe: GroupHandler, @unchecked Sendable {  // used by one test's thread
    var fired: [(timer: GroupTimer, at: UInt64)] = []
    var wakes = 0
    var ready: [Watch] = []
    /// The eventfd a test watches; drained when reported, as a device drains what it reads.
    var signal: EventFD?
    func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult { .blocked }
    func handle(_ event: GroupEvent, in group: QueueGroup) {
        switch event {
        case let .timer(timer): fired.append((timer, monotonicNanoseconds()))
        case .wake: wakes += 1
        case let .ready(watch, _):
            ready.append(watch)
            signal?.drain()
        }
    }
}

/// Reads exactly `count` bytes from `socket` (bounded by five seconds).
func readHost(_ socket: OwnedDescriptor, count: Int) throws -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: count)
    let deadline = nowMilliseconds() + 5000
    while bytes.count < count {
        guard waitReadable(socket.rawValue, timeoutMilliseconds: Int32(max(0, deadline - nowMilliseconds()))) else { break }
        let n = recv(socket.rawValue, &chunk, count - bytes.count, Int32(MSG_DONTWAIT))
        if n > 0 { bytes += chunk[0..<n] } else if n == 0 { break }
    }
    return bytes
}

/// CPU time (user + system, in 10 ms ticks) of this process's `vhu-queue-0` threads.
func workerCPUTicks() -> Int? {
    guard let dir = opendir("/proc/self/task") else { return nil }
    defer { closedir(dir) }
    var total: Int?
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid.first?.isNumber == true, readText("/proc/self/task/\(tid)/comm") == "vhu-queue-0\n",
              let stat = readText("/proc/self/task/\(tid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
        // Fields after "comm)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { continue }
        total = (total ?? 0) + user + system
    }
    return total
}

func readText(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 1024)
    let n = fread(&buffer, 1, buffer.count - 1, file)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
