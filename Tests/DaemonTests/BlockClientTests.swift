import Foundation
import Testing

/// vhost-user-blk as a process, driven by an independent front-end: libblkio's virtio-blk-vhost-user
/// driver (through vhost-user-blk-bench), which negotiates its own way (SET_FEATURES first, NEED_REPLY
/// on everything, memory only by ADD_MEM_REG, a plain close at the end).
@Suite("vhost-user-blk with the libblkio client")
struct BlockClientTests {
    @Test("libblkio writes and verifies data on 2 queues at depth 32 with no mismatch", arguments: ["auto", "io_uring", "threads"])
    func libblkioVerifies(engine: String) throws {
        let dir = try TemporaryDirectory()
        let image = "\(dir.path)/disk.img"
        let socket = "\(dir.path)/blk.sock"
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        #expect(truncate(image, 64 << 20) == 0)
        let daemon = try DaemonProcess(command: [try Binaries.path("vhost-user-blk"), "--socket-path", socket,
                                                 "--blk-file", image, "--num-queues", "2", "--engine", engine])
        defer { daemon.stop() }
        try daemon.waitForStandardError(containing: "listening on \(socket)")

        let client = try DaemonProcess(command: [try Binaries.path("vhost-user-blk-bench"), "verify", "--socket", socket,
                                                 "--queues", "2", "--depth", "32", "--size", "32M"])
        defer { client.stop() }
        let status = client.waitForExit(timeout: .seconds(120))
        #expect(status == 0, "\(client.diagnostics)\ndaemon:\n\(daemon.diagnostics)")
        #expect(client.standardOutput.contains("verify: OK"), "\(client.standardOutput)")
        // libblkio closes without GET_VRING_BASE: the daemon treats that as a stop and keeps serving.
        try daemon.waitForStandardError(containing: "front-end disconnected")
        #expect(daemon.waitForExit(timeout: .milliseconds(200)) == nil, "the daemon keeps running")
    }
}
