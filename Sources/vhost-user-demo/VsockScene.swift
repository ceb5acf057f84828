// The demo's vhost-user-vsock: a host program reaches a guest's vsock listener through the daemon's
// CONNECT convention, under QEMU's vhost-user-vsock-pci and the custom kernel's built-in vsock.

import Foundation
import GuestBed
import VhostUserKit

extension DemoScene {
    static let vsock = DemoScene(name: "vsock", summary: "vhost-user-vsock: a host program talks to a guest's vsock listener (vhost-user-vsock-pci)") { arguments in
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("demo-vsock-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let uds = "\(dir)/v.sock"
        let daemon = GuestDaemon(executable: "vhost-user-vsock", arguments: ["--guest-cid", "3", "--uds-path", uds] + arguments,
                                 qemuDevice: "vhost-user-vsock-pci")
        let reply = Locked("")
        _ = try runGuest(
            "\(daemon.commandLine): booting Linux under QEMU (TCG, vhost-user-vsock-pci) with vsock built in",
            daemons: [daemon], modules: [], script: """
                set -e
                echo "kernel: $(uname -r)"
                vsock-tool echo 1234 stream 1 &
                sleep 0.5
                echo @@listening
                wait
                """, machine: .customKernel, tools: ["vsock-tool"],
            hostAction: { control in
                try control.waitForLine("@@listening", timeout: .seconds(120))
                let socket = try UnixListener.connect(to: uds)
                let message = Array("CONNECT 1234\nhello from the host\n".utf8)
                _ = message.withUnsafeBytes { send(socket.rawValue, $0.baseAddress, $0.count, 0) }
                shutdown(socket.rawValue, Int32(SHUT_WR))
                var bytes: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 256)
                while true {
                    let n = recv(socket.rawValue, &buffer, buffer.count, 0)
                    if n <= 0 { break }
                    bytes += buffer[0..<n]
                }
                reply.withLock { $0 = String(decoding: bytes, as: UTF8.self) }
            })
        let text = reply.withLock { $0 }
        print("--- the host program's socket read ---\n\(indented(text))")
        guard text.hasPrefix("OK "), text.hasSuffix("hello from the host\n") else {
            throw DemoFailure("the host program read \(text.debugDescription), not OK and its own line echoed by the guest")
        }
        return "a host program sent CONNECT 1234 to \(uds), got OK, and the guest's listener echoed its line"
    }
}
