// vhost-user-console in a real guest: QEMU's generic vhost-user-device-pci (virtio id 3, built
// user-creatable by scripts/prepare-qemu), Linux's virtio_console driver with MULTIPORT: hvc0, a
// named port, a resize.

import Foundation
import GuestBed
import Testing
import VhostUserKit

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct ConsoleGuestTests {
    static let megabytes16 = 16 << 20

    /// The guest's half: writes to hvc0, finds the named port, follows a resize, then moves 16 MiB
    /// out and 16 MiB in through the named port, hashing both; prints `key=value` lines and `@@` steps.
    static let script = """
        set -e
        echo "hello from the guest console" > /dev/hvc0
        dev=none
        for d in /sys/class/virtio-ports/*; do
            name=$(cat $d/name 2>/dev/null || true)
            echo "port.$(basename $d)=$name"
            if [ "$name" = data ]; then dev=/dev/$(basename $d); fi
        done
        # udev would make this link in a full system; busybox has none.
        mkdir -p /dev/virtio-ports && ln -s $dev /dev/virtio-ports/data
        echo "size.before=$(stty size < /dev/hvc0)"
        echo @@resize
        read -r reply <&3
        for i in $(seq 50); do
            size=$(stty size < /dev/hvc0)
            [ "$size" != "24 80" ] && break
            sleep 0.1
        done
        echo "size.after=$size"
        head -c \(megabytes16) /dev/urandom > out
        echo "out.sha256=$(sha256sum out | cut -d' ' -f1)"
        echo @@send
        cat out > /dev/virtio-ports/data
        echo @@receive
        echo "in.sha256=$(head -c \(megabytes16) /dev/virtio-ports/data | sha256sum | cut -d' ' -f1)"
        """

    @Test func guestConsoleNamedPortAndResize() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("console-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let consoleLog = "\(dir)/console.log", dataSocket = "\(dir)/data.sock", resizeSocket = "\(dir)/resize.sock"
        let outcome = HostOutcome()

        let daemon = GuestDaemon(
            executable: "vhost-user-console",
            arguments: ["--port", "name=,backend=file:\(consoleLog)", "--port", "name=data,backend=unix:\(dataSocket)",
                        "--resize-socket", resizeSocket],
            qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=3,num_vqs=6,config_size=12")
        let result = try GuestTestBed.run(
            daemons: [daemon], modules: [], script: Self.script, timeout: .seconds(600), machine: .genericDevice,
            hostAction: { control in
                try control.waitForLine("@@resize", timeout: .seconds(120))
                let resize = try HostSocket(connectingTo: resizeSocket)
                try resize.write(Array("resize 132 43\n".utf8))
                outcome.set("resize.reply", String(decoding: try resize.readLine(), as: UTF8.self))
                try control.send("resized")

                try control.waitForLine("@@send", timeout: .seconds(300))
                let data = try HostSocket(connectingTo: dataSocket)
                outcome.set("received.sha256", try BlockGuestTests.sha256(Data(try data.read(count: Self.megabytes16))))

                try control.waitForLine("@@receive", timeout: .seconds(300))
                var input = [UInt8](repeating: 0, count: Self.megabytes16)
                var rng = SystemRandomNumberGenerator()
                input.withUnsafeMutableBytes { raw in
                    for i in stride(from: 0, to: raw.count, by: 8) { raw.storeBytes(of: rng.next() as UInt64, toByteOffset: i, as: UInt64.self) }
                }
                outcome.set("sent.sha256", try BlockGuestTests.sha256(Data(input)))
                try data.write(input)
                // Stay attached until the guest has read it all (it prints its hash then).
                _ = try control.waitForLine(timeout: .seconds(300)) { $0.hasPrefix("in.sha256=") }
            })
        #expect(result.status == 0, "guest output:\n\(result.output)")
        let values = result.values
        let console = (try? String(contentsOfFile: consoleLog, encoding: .utf8)) ?? ""
        #expect(console.contains("hello from the guest console"), "console log: \(console)")
        #expect(values.values.contains("data"), "ports: \(values.filter { $0.key.hasPrefix("port.") })")
        #expect(values["size.before"] == "24 80")
        #expect(outcome.get("resize.reply") == "ok")
        #expect(values["size.after"] == "43 132", "the guest's hvc0 size after resize 132x43: \(values["size.after"] ?? "none")")
        #expect(values["out.sha256"] != nil && values["out.sha256"] == outcome.get("received.sha256"))
        #expect(values["in.sha256"] != nil && values["in.sha256"] == outcome.get("sent.sha256"))
    }
}

/// What the host action found, read by the test once the run is over.
final class HostOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: String] = [:]
    func set(_ key: String, _ value: String) { lock.withLock { values[key] = value } }
    func get(_ key: String) -> String? { lock.withLock { values[key] } }
}

/// A connected unix stream socket, blocking.
final class HostSocket {
    private let socket: OwnedDescriptor
    var fd: Int32 { socket.rawValue }

    init(connectingTo path: String) throws {
        do {
            socket = try UnixListener.connect(to: path)
        } catch {
            throw GuestTestBedError("cannot connect to \(path): \(error)")
        }
    }

    func write(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw GuestTestBedError("send: errno \(errno)") }
            done += n
        }
    }

    func read(count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            guard n > 0 else { throw GuestTestBedError("the socket closed after \(done) of \(count) bytes") }
            done += n
        }
        return out
    }

    func readLine() throws -> [UInt8] {
        var line: [UInt8] = []
        while true {
            let byte = try read(count: 1)[0]
            if byte == UInt8(ascii: "\n") { return line }
            line.append(byte)
        }
    }
}
