import Testing
#if canImport(Glibc)
import Glibc
#endif
import VhostUserKit
import VhostUserTesting
@testable import RNGDevice

@Suite("vhost-user-rng through the fake frontend")
struct RNGDeviceTests {
    @Test("every front-end ordering gets entropy in its buffers", arguments: FrontendProfile.allCases)
    func entropyReachesTheGuest(profile: FrontendProfile) throws {
        let d = try DeviceFixture(try RNGDevice(), profile: profile, queueSizes: [64], regionCount: 2)
        let memory = d.memory, q = d.queue
        let a = memory.allocate(4096), b = memory.allocate(512)
        q.submit([.writable(a, 4096)])
        q.submit([.writable(b, 512)], indirect: true)
        q.notifyDevice()
        let used = try q.waitForUsed(2)
        #expect(used.map(\.length).sorted() == [512, 4096])
        // Entropy is not all zeroes; the chance of 4 KiB of zeroes from /dev/urandom is nil.
        #expect(memory.read(a, count: 4096).contains { $0 != 0 })
        #expect(memory.read(b, count: 512).contains { $0 != 0 })
        #expect(Set(memory.read(a, count: 4096)).count > 200)
    }

    @Test("without a daemon: the source's bytes land in the buffer, one request checked synchronously")
    func sourceBytesReachTheBuffer() throws {
        let path = "/tmp/vhu-rng-source-\(getpid())"
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 7) }
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        #expect(write(fd, bytes, bytes.count) == bytes.count)
        close(fd)
        defer { unlink(path) }
        let harness = try GroupHarness(device: try RNGDevice(source: .file(path)))
        let q = harness.queue(0)
        let a = harness.memory.allocate(100), b = harness.memory.allocate(100)
        q.submit([.writable(a, 100)])
        q.submit([.writable(b, 50), .writable(b + 50, 50)], indirect: true)
        harness.run()
        #expect(q.takeUsed().map(\.length) == [100, 100])
        #expect(harness.memory.read(a, count: 100) == Array(bytes[0..<100]))
        #expect(harness.memory.read(b, count: 100) == Array(bytes[100..<200]))
    }

    @Test("a rate limit caps the bytes served in one period")
    func rateLimitCapsBytes() throws {
        let d = try DeviceFixture(try RNGDevice(rateLimit: RateLimit(maxBytes: 1000, periodMilliseconds: 60_000)))
        let memory = d.memory, q = d.queue
        let a = memory.allocate(800), b = memory.allocate(800)
        q.submit([.writable(a, 800)])
        q.submit([.writable(b, 800)])
        q.notifyDevice()
        let used = try q.waitForUsed(2)
        #expect(used.map(\.length) == [800, 200])
        // The budget is spent: a third request is not served in this period.
        let c = memory.allocate(100)
        q.submit([.writable(c, 100)])
        q.notifyDevice()
        #expect(throws: FakeFrontendError.self) { try q.waitForUsed(1, timeoutMilliseconds: 300) }
    }

    @Test("a throttled request is served when the next period starts, without another kick")
    func rateLimitRefills() throws {
        let d = try DeviceFixture(try RNGDevice(rateLimit: RateLimit(maxBytes: 64, periodMilliseconds: 100)), profile: .crosvm)
        let memory = d.memory, q = d.queue
        let a = memory.allocate(64), b = memory.allocate(64)
        q.submit([.writable(a, 64)])
        q.submit([.writable(b, 64)])
        q.notifyDevice()
        let used = try q.waitForUsed(2, timeoutMilliseconds: 5000)
        #expect(used.map(\.length) == [64, 64])
    }

    @Test("a source file that runs out gives short and then empty completions, not a hang")
    func shortSourceFile() throws {
        let path = "/tmp/rng-source-\(UInt32.random(in: 0...UInt32.max))"
        let bytes = (0..<100).map { UInt8($0 + 1) }
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, 100) }
        close(fd)
        defer { unlink(path) }
        let d = try DeviceFixture(try RNGDevice(source: .file(path)))
        let memory = d.memory, q = d.queue
        let a = memory.allocate(4096), b = memory.allocate(4096)
        q.submit([.writable(a, 4096)])
        q.submit([.writable(b, 4096)])
        q.notifyDevice()
        #expect(try q.waitForUsed(2).map(\.length) == [100, 0])
        #expect(memory.read(a, count: 100) == bytes)
    }

    @Test("getrandom(2) as the source fills buffers split over several descriptors")
    func getrandomAcrossDescriptors() throws {
        let d = try DeviceFixture(try RNGDevice(source: .getrandom), profile: .cloudHypervisor)
        let memory = d.memory, q = d.queue
        let parts = (0..<3).map { _ in memory.allocate(1000) }
        q.submit(parts.map { .writable($0, 1000) })
        q.notifyDevice()
        #expect(try q.waitForUsed(1).map(\.length) == [3000])
        for p in parts { #expect(Set(memory.read(p, count: 1000)).count > 100) }
    }

    @Test("a hostile ring (indirect tables whose descriptors each cover all of guest RAM) costs a bounded fill per request, and GET_VRING_BASE is answered at once")
    func hostileRingIsBounded() throws {
        let d = try DeviceFixture(try RNGDevice(), queueSizes: [256], memorySize: 32 << 20)
        let frontend = d.frontend, memory = d.memory, q = d.queue
        frontend.replyTimeoutMilliseconds = 2000
        // Every chain: 64 descriptors over the same 16 MiB, 1 GiB of writable buffers in all.
        let data = memory.regions[0].guestPhysicalAddress + (16 << 20)
        let buffers = Array(repeating: BufferSpec.writable(data, 16 << 20), count: 64)
        for _ in 0..<256 { q.submit(buffers, indirect: true) }
        q.notifyDevice()
        let first = try q.waitForUsed(1)
        let start = monotonicNanoseconds()
        let base = try frontend.getVringBase(0)
        #expect(monotonicNanoseconds() - start < 1_000_000_000)
        let used = first + q.takeUsed()
        #expect(Int(base) == used.count)
        #expect(used.allSatisfy { $0.length == UInt32(RNGDevice.maxBytesPerRequest) })
    }
}
