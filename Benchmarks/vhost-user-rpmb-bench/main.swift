// vhost-user-rpmb benchmark: authenticated writes and reads per second through the whole vhost-user path
// (fake driver → rings → daemon worker → HMAC check → image commit → used ring), with and without
// fsync, each against a reference measured in the same run on the same filesystem: the raw pwrite (+
// fdatasync) or pread of the same 256-byte blocks. Prints the rates and the ratios.
//
//   vhost-user-rpmb-bench [--seconds S] [--dir DIRECTORY] [--blocks N]
//
// Requests go one at a time, as RPMB's write counter makes them: each write names the counter the last
// one left. --blocks sets the blocks per request (default 1).
import BenchmarkSupport
import Crypto
import RPMBDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

typealias Arguments = BenchmarkArguments

let arguments = Arguments(CommandLine.arguments.dropFirst())
let seconds = arguments.double("seconds", 3)
let directory = arguments.string("dir", "/var/tmp")
let blocks = arguments.int("blocks", 1)
let key = SymmetricKey(data: (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) })
let keyBytes = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) }

/// One device on a fresh image in `directory`, served by an in-process daemon.
@MainActor
final class Bench {
    let path: String
    let fixture: DeviceFixture<RPMBDevice>
    let request: UInt64, response: UInt64
    var counter: UInt32 = 0

    init(durable: Bool) throws {
        path = "\(directory)/rpmb-bench-\(getpid()).img"
        unlink(path)
        try RPMBImage.create(path: path, capacityUnits: 8, key: AuthenticationKey(keyBytes)!)
        let device = try RPMBDevice(image: try RPMBImage(file: try PosixImageFile(path: path, durable: durable)),
                                    limits: .init(maxWriteBlocks: max(blocks, 1), maxReadBlocks: max(blocks, 1)))
        fixture = try DeviceFixture(device, queueSizes: [16])
        request = fixture.memory.allocate((blocks + 1) * RPMBFrame.size)
        response = fixture.memory.allocate(blocks * RPMBFrame.size)
    }

    func close() {
        fixture.daemon.stop()
        unlink(path)
    }

    func frame(_ i: Int) -> FrameView { FrameView(fixture.memory.pointer(request) + i * RPMBFrame.size) }

    /// One chain: `requestFrames` frames, room for `responseFrames`; waits for its completion.
    func exchange(requestFrames: Int, responseFrames: Int) throws {
        fixture.queue.submit([.readable(request, requestFrames * RPMBFrame.size), .writable(response, responseFrames * RPMBFrame.size)])
        fixture.queue.notifyDevice()
        _ = try fixture.queue.waitForUsed(1)
        let result = FrameView(fixture.memory.pointer(response)).result
        guard result == 0 else { fatalError("request failed with result \(result)") }
    }

    /// Authenticated writes per second: frames signed by the driver (HMAC over the data fields onwards).
    func writes() throws -> Double {
        let start = now()
        var done = 0
        while now() - start < seconds {
            for i in 0..<blocks {
                let f = frame(i)
                f.clear()
                f.requestResponse = RPMBFrame.Request.dataWrite.rawValue
                f.blockCount = UInt16(blocks)
                f.address = UInt16((done * blocks) % 2048)
                f.writeCounter = counter
                f.data.storeBytes(of: UInt64(done), as: UInt64.self)
            }
            var hmac = HMAC<SHA256>(key: key)
            for i in 0..<blocks { hmac.update(data: UnsafeRawBufferPointer(frame(i).authenticated)) }
            hmac.finalize().withUnsafeBytes { frame(blocks - 1).keyOrMAC.copyMemory(from: $0) }
            let result = frame(blocks)
            result.clear()
            result.requestResponse = RPMBFrame.Request.resultRead.rawValue
            result.blockCount = 1
            try exchange(requestFrames: blocks + 1, responseFrames: 1)
            counter += 1
            done += 1
        }
        return Double(done) / (now() - start)
    }

    /// Authenticated reads per second, the response MAC checked by the driver.
    func reads() throws -> Double {
        let start = now()
        var done = 0
        while now() - start < seconds {
            let f = frame(0)
            f.clear()
            f.requestResponse = RPMBFrame.Request.dataRead.rawValue
            f.blockCount = UInt16(blocks)
            f.address = UInt16((done * blocks) % 2048)
            f.nonce.storeBytes(of: UInt64(done), as: UInt64.self)
            try exchange(requestFrames: 1, responseFrames: blocks)
            var hmac = HMAC<SHA256>(key: key)
            let base = fixture.memory.pointer(response)
            for i in 0..<blocks { hmac.update(data: UnsafeRawBufferPointer(FrameView(base + i * RPMBFrame.size).authenticated)) }
            let valid = hmac.finalize().withUnsafeBytes { mac in
                mac.elementsEqual(UnsafeRawBufferPointer(FrameView(base + (blocks - 1) * RPMBFrame.size).keyOrMAC))
            }
            guard valid else { fatalError("read response with a bad MAC") }
            done += 1
        }
        return Double(done) / (now() - start)
    }
}

/// The reference: the same bytes written (and synced) or read with plain pwrite/pread on the same
/// filesystem, one request's worth (`blocks` × 256 bytes) per operation.
@MainActor
func reference(write: Bool, sync: Bool) -> Double {
    let path = "\(directory)/rpmb-bench-ref-\(getpid())"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    defer { Glibc.close(fd); unlink(path) }
    let size = blocks * RPMBFrame.blockSize
    _ = ftruncate(fd, off_t(8 * RPMBImage.unitBytes))
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 7, count: size)
    let start = now()
    var done = 0
    while now() - start < seconds {
        let offset = off_t((done * size) % (2048 * 256))
        if write {
            guard pwrite(fd, buffer, size, offset) == size else { fatalError("pwrite: errno \(errno)") }
            if sync { fdatasync(fd) }
        } else {
            guard pread(fd, buffer, size, offset) == size else { fatalError("pread: errno \(errno)") }
        }
        done += 1
    }
    return Double(done) / (now() - start)
}

func line(_ name: String, _ rate: Double, _ reference: Double, _ referenceName: String) {
    let ratio = rate / reference
    print("\(name): \(Int(rate.rounded()))/s   reference \(referenceName): \(Int(reference.rounded()))/s   ratio \((ratio * 1000).rounded() / 1000)")
}

do {
    print("vhost-user-rpmb-bench: \(blocks) block(s) per request, \(seconds) s per case, image in \(directory)")
    let durable = try Bench(durable: true)
    line("authenticated writes, fsync", try durable.writes(), reference(write: true, sync: true), "pwrite+fdatasync")
    line("authenticated reads", try durable.reads(), reference(write: false, sync: false), "pread")
    durable.close()
    let fast = try Bench(durable: false)
    line("authenticated writes, --no-fsync", try fast.writes(), reference(write: true, sync: false), "pwrite")
    fast.close()
} catch {
    print("vhost-user-rpmb-bench: \(error)")
    exit(1)
}
