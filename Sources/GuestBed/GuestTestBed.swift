// The real-guest bed: an unmodified QEMU boots Debian's kernel with a busybox initramfs, attached
// to vhost-user daemons, and runs a shell script inside the guest.
//
// A caller (a device's guest tests, the demo) only supplies its daemons, the kernel modules its
// driver needs and a guest script; the script's output and exit status come back through the
// guest's second serial port. The kernel and modules come from scripts/prepare-guest (GuestCache).
//
//     let result = try GuestTestBed.run(
//         daemons: [GuestDaemon(executable: "vhost-user-rng", qemuDevice: "vhost-user-rng-pci")],
//         modules: ["virtio_rng"],
//         script: "head -c 4096 /dev/hwrng | wc -c",
//         timeout: .seconds(120))
//     #expect(result.status == 0)
//
// Guests run one at a time; a boot to the script takes about 3-4 s under TCG.

import Foundation
import Glibc

/// Boots guests attached to vhost-user daemons (see the file comment).
public enum GuestTestBed {
    /// Where the daemon executables are: `VHOST_USER_BIN_DIR`, else the directory of the running
    /// executable: under `swift test` the test binary in `.build/<triple>/debug`, and for a
    /// program run from `.build/debug` that directory; both are where `swift build` puts products.
    public static var binaryDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["VHOST_USER_BIN_DIR"], !dir.isEmpty {
            return dir
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    public static let qemu = "qemu-system-x86_64"

    /// One guest at a time: the machine has two cores and TCG is CPU bound.
    private static let guestLock = NSLock()

    /// Boots a guest attached to `daemons`, loads `modules` (and their dependencies), runs
    /// `script` with `sh` and returns its output and exit status.
    ///
    /// `timeout` bounds each daemon's start and the whole QEMU run; QEMU is killed when it expires
    /// (it blocks forever when a daemon accepts the connection but never answers).
    public static func run(
        daemons: [GuestDaemon], modules: [String], script: String, timeout: Duration
    ) throws -> GuestResult {
        guestLock.lock()
        defer { guestLock.unlock() }

        let cache = try GuestCache.locate()
        let initramfsModules = try cache.resolve(modules)

        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("guest-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }

        var running: [RunningDaemon] = []
        defer { running.forEach { $0.stop() } }
        for (index, daemon) in daemons.enumerated() {
            let socket = "\(tmp)/\(index).sock"
            let process = try RunningDaemon.start(daemon, socket: socket)
            running.append(process)
            try process.waitUntilReady(
                line: daemon.readinessLine.replacingOccurrences(of: "{socket}", with: socket),
                timeout: timeout)
        }

        let nonce = UUID().uuidString
        let initramfs = "\(tmp)/initramfs.cpio"
        try Initramfs.build(
            modules: initramfsModules, script: script, nonce: nonce
        ).write(to: URL(fileURLWithPath: initramfs))

        let consolePath = "\(tmp)/console.log"
        let outputPath = "\(tmp)/output.log"
        var arguments = [
            "-accel", "tcg", "-cpu", "max",
            "-machine", "q35,memory-backend=mem",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-m", "512M",
            "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", "file:\(consolePath)", "-serial", "file:\(outputPath)",
            "-kernel", cache.kernel, "-initrd", initramfs,
            "-append", "console=ttyS0 panic=-1",
        ]
        for (index, daemon) in daemons.enumerated() {
            arguments += [
                "-chardev", "socket,id=c\(index),path=\(tmp)/\(index).sock",
                "-device", "\(daemon.qemuDevice),chardev=c\(index)\(daemon.qemuDeviceOptions)",
            ]
        }

        let qemuLogPath = "\(tmp)/qemu.log"
        let exit = try runQEMU(arguments: arguments, logPath: qemuLogPath, timeout: timeout)

        let console = readText(consolePath)
        let rawOutput = readText(outputPath).replacingOccurrences(of: "\r", with: "")
        func failure(_ what: String) -> GuestTestBedError {
            var text = "\(what)\nQEMU: \(qemu) \(arguments.joined(separator: " "))\n"
            text += "QEMU output:\n\(tail(readText(qemuLogPath)))\n"
            text += "guest console (tail):\n\(tail(console))\n"
            text += "guest output:\n\(tail(rawOutput))\n"
            for (index, daemon) in running.enumerated() {
                text += "daemon \(index) (\(daemon.commandLine)) log:\n\(tail(daemon.log))\n"
            }
            return GuestTestBedError(text)
        }
        switch exit {
        case .timedOut:
            let hint = console.isEmpty ? " (the guest never started: QEMU may be waiting for a daemon's reply)" : ""
            throw failure("QEMU did not finish within \(timeout); killed\(hint)")
        case .exited(let code) where code != 0:
            throw failure("QEMU exited with status \(code)")
        case .exited:
            break
        }
        guard let parsed = Initramfs.parseOutput(rawOutput, nonce: nonce) else {
            throw failure("the guest output has no complete result markers")
        }
        return GuestResult(
            output: parsed.output, status: parsed.status, consoleLog: console,
            daemonLogs: running.map(\.log))
    }

    private enum QEMUExit { case exited(Int32), timedOut }

    private static func runQEMU(arguments: [String], logPath: String, timeout: Duration) throws -> QEMUExit {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw GuestTestBedError("cannot create \(logPath): errno \(errno)") }
        defer { close(log) }
        let process = try ChildProcess(command: [try findInPath(qemu)] + arguments, output: log)
        guard let status = process.wait(timeout: timeout) else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
            return .timedOut
        }
        return .exited(status)
    }
}
