// The demo's vhost-user-console: the guest's hvc0 and a named port, each logged to a host file,
// through QEMU's generic vhost-user-device-pci and Linux's virtio_console.

import Foundation
import GuestBed

extension DemoScene {
    static let console = DemoScene(name: "console", summary: "vhost-user-console serving the guest's hvc0 and a named port (virtio_console)") { arguments in
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("demo-console-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let consoleLog = "\(dir)/hvc0.log", portLog = "\(dir)/demo-port.log"
        let daemon = GuestDaemon(
            executable: "vhost-user-console",
            arguments: ["--port", "name=,backend=file:\(consoleLog)", "--port", "name=org.example.demo,backend=file:\(portLog)",
                        "--cols", "100", "--rows", "30"] + arguments,
            qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=3,num_vqs=6,config_size=12")
        let result = try runGuest(
            "\(daemon.commandLine): booting Linux under QEMU (TCG, generic vhost-user-device-pci) with virtio_console",
            daemons: [daemon], modules: [], script: """
                set -e
                echo "kernel: $(uname -r)"
                echo "hello from the guest's hvc0" > /dev/hvc0
                echo "hvc0 size (rows cols): $(stty size < /dev/hvc0)"
                for d in /sys/class/virtio-ports/*; do
                    echo "port $(basename $d): $(cat $d/name 2>/dev/null || echo '(console)')"
                    if [ "$(cat $d/name 2>/dev/null)" = org.example.demo ]; then
                        echo "hello from a named port" > /dev/$(basename $d)
                    fi
                done
                """, machine: .genericDevice)
        let console = (try? String(contentsOfFile: consoleLog, encoding: .utf8)) ?? ""
        let port = (try? String(contentsOfFile: portLog, encoding: .utf8)) ?? ""
        print("--- \(consoleLog) ---\n\(indented(console))")
        print("--- \(portLog) ---\n\(indented(port))")
        guard console.contains("hello from the guest's hvc0") else { throw DemoFailure("hvc0's line did not reach \(consoleLog)") }
        guard port.contains("hello from a named port") else { throw DemoFailure("the named port's line did not reach \(portLog)") }
        let size = result.labelled["hvc0 size (rows cols)"] ?? "none"
        guard size == "30 100" else { throw DemoFailure("the guest's hvc0 is \(size) (rows cols), not the daemon's 30 100") }
        return "the guest wrote to hvc0 and to /dev/virtio-ports/org.example.demo; both lines reached host files"
    }
}
