import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Flow control: no byte lost either way under backpressure, and the console's stated policy when
/// nobody reads it.
@Suite("Console flow control")
struct ConsoleFlowTests {
    static let total = 64 << 20

    /// Port 0 logs to /dev/null, port 1 ("data") listens on a unix socket with a client attached.
    struct Bench {
        let driver: ConsoleDriver
        let path: String
        let client: OwnedDescriptor
        init(bufferBytes: Int = 64 << 10) throws {
            path = temporaryPath("sock")
            var options = ConsoleDevice.Options()
            options.bufferBytes = bufferBytes
            let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                                   .init(name: "data", endpoint: HostEndpoint.open(.unix(path: path)))],
                                           options: options)
            driver = try ConsoleDriver(device, queueSize: 64, memorySize: 16 << 20)
            driver.handshake()
            client = try connectUnix(path)
            let driver = driver
            #expect(driver.turn { driver.receivedControl().contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 1)) })
        }
        func cleanUp() {
            driver.harness.finish()
            unlink(path)
        }
    }

    @Test("64 MiB guest to host through a slow reader: the device stops taking buffers, loses nothing")
    func guestToHostSlowReader() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver, tx = VirtioConsole.transmitQueue(port: 1)
        let chunk = 32 << 10, slots = 16
        let pool = (0..<slots).map { _ in driver.memory.allocate(chunk) }
        var free = pool, owner: [UInt64] = []
        var sent = 0, received = 0, sawBackpressure = false
        var mismatch = false
        var reader = [UInt8](repeating: 0, count: 16 << 10)
        let deadline = now() + 120_000
        while received < Self.total && now() < deadline {
            while sent < Self.total, let address = free.popLast() {
                driver.post(tx, streamBytes(chunk, from: sent), at: address)
                owner.append(address)
                sent += chunk
            }
            driver.run()
            let used = driver.queue(tx).takeUsed()
            free += owner.prefix(used.count)
            owner.removeFirst(used.count)
            if free.isEmpty && used.isEmpty { sawBackpressure = true }
            // The slow reader: at most 16 KiB a turn, while the guest offers 512 KiB.
            let n = recv(bench.client.rawValue, &reader, reader.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                if !reader.withUnsafeBytes({ matchesStream(UnsafeRawBufferPointer(rebasing: $0[0..<n]), from: received) }) { mismatch = true }
                received += n
            } else if used.isEmpty {
                driver.harness.wait(milliseconds: 1)
            }
        }
        #expect(received == Self.total)
        #expect(!mismatch)
        #expect(sawBackpressure, "the device held back the guest's buffers while the host was slow")
    }

    @Test("64 MiB host to guest into a slow guest: the device stops reading the host, loses nothing")
    func hostToGuestSlowGuest() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver, rx = VirtioConsole.receiveQueue(port: 1)
        let fd = bench.client.rawValue
        var sent = 0, received = 0, mismatch = false, sawBackpressure = false
        let block = 64 << 10
        var pending = streamBytes(block, from: 0, seed: 3)
        var free = (0..<8).map { _ in driver.memory.allocate(4096) }, outstanding: [UInt64] = []
        let deadline = now() + 120_000
        while received < Self.total && now() < deadline {
            // The host writes as fast as the socket takes it.
            while sent < Self.total {
                let n = pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n <= 0 { sawBackpressure = true; break }
                sent += n
                pending.removeFirst(n)
                if pending.isEmpty { pending = streamBytes(min(block, Self.total - sent), from: sent, seed: 3) }
            }
            // The slow guest: at most four 4 KiB buffers out at a time (completed in the order offered).
            while outstanding.count < 4, let buffer = free.popLast() {
                driver.offer(rx, size: 4096, at: buffer)
                outstanding.append(buffer)
            }
            driver.run()
            let used = driver.queue(rx).takeUsed()
            for element in used {
                let buffer = outstanding.removeFirst()
                let n = Int(element.length)
                if !matchesStream(UnsafeRawBufferPointer(start: driver.memory.pointer(buffer), count: n), from: received, seed: 3) { mismatch = true }
                received += n
                free.append(buffer)
            }
            if used.isEmpty { driver.harness.wait(milliseconds: 1) }
        }
        #expect(received == Self.total)
        #expect(!mismatch)
        #expect(sawBackpressure, "the host's socket filled while the guest was slow")
    }

    @Test("named port without a client: the guest's output waits (buffers held at the bound), then all of it arrives")
    func namedPortWaitsForClient() throws {
        let path = temporaryPath("sock")
        defer { unlink(path) }
        var options = ConsoleDevice.Options()
        options.bufferBytes = 16 << 10
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.file(path: "/dev/null"))),
                                               .init(name: "data", endpoint: HostEndpoint.open(.unix(path: path)))], options: options)
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        let tx = VirtioConsole.transmitQueue(port: 1)
        for i in 0..<8 { driver.post(tx, streamBytes(4096, from: i * 4096)) }
        driver.run()
        #expect(driver.queue(tx).takeUsed().count == 4, "16 KiB taken, the rest left to the guest")
        let client = try connectUnix(path)
        var got: [UInt8] = []
        #expect(driver.turn { got += readAvailable(client.rawValue); return got.count >= 8 * 4096 })
        #expect(got == streamBytes(8 * 4096, from: 0))
        #expect(driver.queue(tx).takeUsed().count == 4)
        #expect(device.recentErrors.isEmpty)
    }

    @Test("console port without a client: keeps serving the guest and keeps the newest bytes, said once")
    func consoleKeepsNewest() throws {
        let path = temporaryPath("sock")
        defer { unlink(path) }
        var options = ConsoleDevice.Options()
        options.bufferBytes = 8 << 10
        let device = try ConsoleDevice(ports: [.init(name: "", endpoint: HostEndpoint.open(.unix(path: path)))], options: options)
        let driver = try ConsoleDriver(device)
        defer { driver.harness.finish() }
        driver.handshake()
        for i in 0..<10 { driver.transmit(port: 0, streamBytes(3000, from: i * 3000)) }
        #expect(driver.queue(VirtioConsole.transmitQueue(port: 0)).takeUsed().count == 10)
        #expect(device.recentErrors.count == 1)
        #expect(device.recentErrors.first?.contains("newest 8192 bytes") == true)
        let client = try connectUnix(path)
        var got: [UInt8] = []
        #expect(driver.turn { got += readAvailable(client.rawValue); return got.count >= 8192 })
        #expect(got == streamBytes(8192, from: 30000 - 8192))
    }
}
