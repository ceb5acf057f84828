import Crypto
import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// vhost-user-rpmb as a process killed with SIGKILL between the steps of its authenticated writes (its
/// test hook VHOST_USER_RPMB_TEST_KILL_AFTER_STEP), then started again: the write counter and the data
/// it serves agree. The in-process replay tests (RPMBCrashConsistencyTests) cover every step and torn
/// write against a model of the file; this proves the real process and file.
@Suite("vhost-user-rpmb killed between the steps of its writes")
struct RPMBCrashTests {
    static let key: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) }
    /// Write A: 3 blocks at 10 (counter 0); write B: 3 blocks at 11 (counter 1), over two of A's.
    static let a = (address: 10, blocks: (0..<3).map { block(seed: $0 + 1) })
    static let b = (address: 11, blocks: (0..<3).map { block(seed: $0 + 101) })

    /// Each write is four steps (state slot written, synced, blocks written in place, synced): steps
    /// 1-4 are A's, 5-8 B's.
    @Test("after a kill at any step the counter says which writes the data holds", arguments: 1...8)
    func killedAfterStep(step: Int) throws {
        let dir = try TemporaryDirectory()
        let image = "\(dir.path)/rpmb.img", socket = "\(dir.path)/rpmb.sock"
        try createImage(image, keyFile: "\(dir.path)/key")

        let daemon = try DaemonProcess(product: "vhost-user-rpmb", ["--socket-path", socket, "--image", image],
                                       environment: ["VHOST_USER_RPMB_TEST_KILL_AFTER_STEP": String(step)])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(socket)")
        do {
            let c = try ConnectedFrontend(socketPath: socket)
            for (i, write) in [Self.a, Self.b].enumerated() {
                let frames = Self.signed(write.blocks.map { Self.frame(type: 3, blockCount: 3, address: write.address, counter: UInt32(i), data: $0) })
                    + [Self.frame(type: 5)]
                _ = submit(c, frames, responseBytes: 512)
            }
            c.queue.notifyDevice()
            #expect(daemon.waitForExit(timeout: .seconds(10)) == 128 + SIGKILL, "the hook did not kill the daemon:\n\(daemon.diagnostics)")
        }

        // The daemon started again over the same image.
        let again = try DaemonProcess(product: "vhost-user-rpmb", ["--socket-path", socket, "--image", image])
        defer { again.stop() }
        try again.waitForStandardError(containing: "listening on \(socket)")
        let c = try ConnectedFrontend(socketPath: socket)
        let nonce = (0..<16).map { UInt8($0 &* 3 &+ 1) }
        let counter = try exchange(c, [Self.frame(type: 2, nonce: nonce)], responseBytes: 512)
        #expect(counter.count == 1 && Self.field16(counter[0], 510) == 0x0200 && Self.field16(counter[0], 508) == 0 && Self.macIsValid(counter))
        let written = Int(Self.field32(counter[0], 500))
        // A process kill loses no write that reached the file: a write counts once its state slot is written.
        #expect(written == (step + 3) / 4, "counter \(written) after a kill at step \(step)")

        let read = try exchange(c, [Self.frame(type: 4, blockCount: 4, address: 10, nonce: nonce)], responseBytes: 4 * 512)
        #expect(read.count == 4 && Self.macIsValid(read))
        // Blocks 10-13 named by the write whose data they hold ("-": zeroes, "?": anything else).
        let zero = [UInt8](repeating: 0, count: 256)
        let held = read.enumerated().map { i, f -> String in
            let data = Array(f[228..<484])
            if data == zero { return "-" }
            if i < 3 && data == Self.a.blocks[i] { return "A" }
            if i >= 1 && data == Self.b.blocks[i - 1] { return "B" }
            return "?"
        }.joined()
        #expect(held == ["----", "AAA-", "ABBB"][min(written, 2)], "blocks 10-13 hold \(held) with counter \(written)")
    }

    // MARK: Helpers

    private func createImage(_ image: String, keyFile: String) throws {
        #expect(FileManager.default.createFile(atPath: keyFile, contents: Data(Self.key)))
        let create = try DaemonProcess(product: "vhost-user-rpmb", ["--create", "--image", image, "--capacity", "128K", "--key-file", keyFile])
        defer { create.stop() }
        guard create.waitForExit(timeout: .seconds(10)) == 0 else { throw DaemonTestError("--create failed:\n\(create.diagnostics)") }
    }

    /// Puts a chain (the frames readable, `responseBytes` writable) in the ring without kicking; returns
    /// the guest address of the response.
    private func submit(_ c: ConnectedFrontend, _ frames: [[UInt8]], responseBytes: Int) -> UInt64 {
        let request = frames.flatMap { $0 }
        let r = c.memory.allocate(request.count), w = c.memory.allocate(responseBytes)
        c.memory.write(request, at: r)
        _ = c.queue.submit([.readable(r, request.count), .writable(w, responseBytes)])
        return w
    }

    /// Sends one chain and waits for it; returns the response frames.
    private func exchange(_ c: ConnectedFrontend, _ frames: [[UInt8]], responseBytes: Int) throws -> [[UInt8]] {
        let w = submit(c, frames, responseBytes: responseBytes)
        c.queue.notifyDevice()
        let used = try c.queue.waitForUsed(1, timeoutMilliseconds: 10_000)
        let bytes = c.memory.read(w, count: Int(used[0].length))
        return stride(from: 0, to: bytes.count, by: 512).map { Array(bytes[$0..<$0 + 512]) }
    }

    /// A frame with the fields of virtio 1.2, 5.12.6.1 (big-endian).
    static func frame(type: UInt16, blockCount: UInt16 = 1, address: Int = 0, counter: UInt32 = 0,
                      nonce: [UInt8] = [], data: [UInt8] = []) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: 512)
        f.replaceSubrange(228..<228 + data.count, with: data)
        f.replaceSubrange(484..<484 + nonce.count, with: nonce)
        for (offset, value, width) in [(500, Int(counter), 4), (504, address, 2), (506, Int(blockCount), 2), (510, Int(type), 2)] {
            for i in 0..<width { f[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * (width - 1 - i))) }
        }
        return f
    }

    static func field16(_ f: [UInt8], _ at: Int) -> UInt16 { UInt16(f[at]) << 8 | UInt16(f[at + 1]) }
    static func field32(_ f: [UInt8], _ at: Int) -> UInt32 { UInt32(field16(f, at)) << 16 | UInt32(field16(f, at + 2)) }

    static func mac(_ frames: [[UInt8]]) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
        for f in frames { hmac.update(data: f[228..<512]) }
        return Array(hmac.finalize())
    }

    static func signed(_ frames: [[UInt8]]) -> [[UInt8]] {
        var frames = frames
        frames[frames.count - 1].replaceSubrange(196..<228, with: mac(frames))
        return frames
    }

    static func macIsValid(_ frames: [[UInt8]]) -> Bool { !frames.isEmpty && Array(frames.last![196..<228]) == mac(frames) }

    static func block(seed: Int) -> [UInt8] { (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed &* 37 &+ 1) } }
}
