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
// A daemon that someone else runs (a systemd socket unit, see Tests/SystemdTests) is attached with
// `GuestDaemon(listeningOn: SOCKET, ...)`: the bed only connects QEMU to it.
//
// Guests run one at a time (`runTogether` boots several at once, e.g. guests that talk to each
// other); a boot to the script takes about 3-4 s under TCG.

import Foundation
import Glibc
import VhostUserTesting

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
    static let guestLock = NSLock()

    /// Boots a guest attached to `daemons`, loads `modules` (and their dependencies), runs
    /// `script` with `sh` and returns its output and exit status.
    ///
    /// `timeout` bounds each daemon's start and the whole QEMU run; QEMU is killed when it expires
    /// (it blocks forever when a daemon accepts the connection but never answers). The guest has
    /// `cpus` virtual CPUs (a multi-queue driver uses at most one queue per CPU).
    ///
    /// `machine` chooses the kernel and the QEMU (`GuestMachine`: Debian's kernel and modules under the
    /// installed QEMU by default); `tools` names static helper programs for the guest (`GuestTools`),
    /// placed at `/bin/<name>`.
    ///
    /// `hostAction`, when given, runs on a thread of its own once QEMU has started: it acts on the
    /// host while the guest runs, in step with the lines the guest script prints (see
    /// `GuestControl`). When it throws, QEMU is killed and the run fails with its error; the run
    /// waits for it to return after QEMU exits.
    public static func run(
        daemons: [GuestDaemon], modules: [String], script: String, timeout: Duration, cpus: Int = 1,
        machine: GuestMachine = .standard, tools: [String] = [],
        hostAction: (@Sendable (GuestControl) throws -> Void)? = nil
    ) throws -> GuestResult {
        guestLock.lock()
        defer { guestLock.unlock() }
        return try boot(
            GuestRun(daemons: daemons, modules: modules, script: script, timeout: timeout, cpus: cpus,
                     machine: machine, tools: tools, hostAction: hostAction),
            daemonsReady: {})
    }

    /// Boots `guests` at the same time (e.g. two guests of one vsock group that talk to each other),
    /// each once the daemons of the guest before it are ready: a later guest can attach, with
    /// `GuestDaemon(listeningOn:)`, to a daemon an earlier guest's run started. Returns the results
    /// in order; throws when any guest fails, with every failure.
    public static func runTogether(_ guests: [GuestRun]) throws -> [GuestResult] {
        guestLock.lock()
        defer { guestLock.unlock() }
        let results = GuestResults(count: guests.count)
        let finished = DispatchGroup()
        for (index, guest) in guests.enumerated() {
            let ready = DispatchSemaphore(value: 0)
            finished.enter()
            Thread.detachNewThread {
                results.set(index, Result { try boot(guest, daemonsReady: { ready.signal() }) })
                ready.signal()
                finished.leave()
            }
            ready.wait()
        }
        finished.wait()
        // One guest's failure often starts in another: report every guest that failed.
        let all = results.all.map { $0! }
        let failures = all.enumerated().compactMap { index, result -> String? in
            guard case let .failure(error) = result else { return nil }
            return "guest \(index) of \(all.count): \(error)"
        }
        guard failures.isEmpty else { throw GuestTestBedError(failures.joined(separator: "\n\n")) }
        return try all.map { try $0.get() }
    }

    /// One guest's run (see `run`), with `daemonsReady` called once its daemons are ready.
    private static func boot(_ guest: GuestRun, daemonsReady: () -> Void) throws -> GuestResult {
        let (daemons, modules, script, timeout) = (guest.daemons, guest.modules, guest.script, guest.timeout)
        let (cpus, machine, tools, hostAction) = (guest.cpus, guest.machine, guest.tools, guest.hostAction)
        let start = ContinuousClock.now

        let (kernel, initramfsModules) = try machine.kernelAndModules(modules)
        let qemuPath = try machine.qemuPath()
        let guestTools = try GuestTools.compile(tools)

        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("guest-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }

        let running = DaemonSet(daemons: daemons, directory: tmp)
        defer { running.stopAll() }
        try running.startAll(timeout: timeout)
        daemonsReady()

        let nonce = UUID().uuidString
        let initramfs = "\(tmp)/initramfs.cpio"
        try Initramfs.build(
            modules: initramfsModules, tools: guestTools, script: script, nonce: nonce
        ).write(to: URL(fileURLWithPath: initramfs))

        let consolePath = "\(tmp)/console.log"
        let outputPath = "\(tmp)/output.log"
        // The host's input to the script: QEMU's `pipe` chardev reads INPUT.in and writes INPUT.out.
        let inputPath = "\(tmp)/input"
        for fifo in ["\(inputPath).in", "\(inputPath).out"] where mkfifo(fifo, 0o600) != 0 {
            throw GuestTestBedError("mkfifo \(fifo): errno \(errno)")
        }
        var arguments = [
            "-accel", "tcg", "-cpu", "max",
            "-machine", "q35,memory-backend=mem",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-m", "512M",
            "-smp", "\(cpus)", "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", "file:\(consolePath)", "-serial", "file:\(outputPath)", "-serial", "pipe:\(inputPath)",
            "-kernel", kernel, "-initrd", initramfs,
            "-append", "console=ttyS0 panic=-1",
        ]
        // A QMP socket for the host action (`GuestControl.qmpSocket`).
        arguments += ["-qmp", "unix:\(tmp)/qmp.sock,server=on,wait=off"]
        for (index, daemon) in daemons.enumerated() {
            if daemon.hotplugged {
                arguments += ["-device", "pcie-root-port,id=\(GuestControl.hotplugPort(index)),chassis=\(index + 1)"]
                continue
            }
            arguments += [
                "-chardev", "socket,id=c\(index),path=\(running.sockets[index])\(daemon.qemuChardevOptions)",
                "-device", "\(daemon.qemuDevice),chardev=c\(index)\(daemon.qemuDeviceOptions)",
            ]
        }

        // The host action watches the output file from before QEMU opens it.
        let watcher = try hostAction.map { _ in try OutputWatcher(path: outputPath) }
        let qemuLogPath = "\(tmp)/qemu.log"
        let exit = try runQEMU(qemuPath, arguments: arguments, logPath: qemuLogPath, timeout: timeout) { qemuProcess in
            guard let hostAction, let watcher else { return nil }
            return HostActionThread.start(hostAction, GuestControl(
                daemons: running, output: watcher, inputPath: "\(inputPath).in", qmpSocket: "\(tmp)/qmp.sock")) {
                qemuProcess.kill(SIGKILL)
            }
        } afterExit: { action in
            watcher?.finish()
            return action?.join(timeout: timeout)
        }

        // The daemons stop before the run is judged, so their logs are complete.
        running.stopAll()
        let daemonLogs = running.logs
        let console = readText(consolePath)
        let rawOutput = readText(outputPath).replacingOccurrences(of: "\r", with: "")
        func failure(_ what: String) -> GuestTestBedError {
            var text = "\(what)\nQEMU: \(qemuPath) \(arguments.joined(separator: " "))\n"
            text += "QEMU output:\n\(tail(readText(qemuLogPath)))\n"
            text += "guest console (tail):\n\(tail(console))\n"
            text += "guest output:\n\(tail(rawOutput))\n"
            for (index, (commandLine, log)) in zip(running.commandLines, daemonLogs).enumerated() {
                text += "daemon \(index) (\(commandLine)) log:\n\(tail(log))\n"
            }
            return GuestTestBedError(text)
        }
        // A sanitized daemon (scripts/test-sanitizers) that found a bug fails the run, whatever the guest saw.
        for (index, log) in daemonLogs.enumerated() {
            if let report = sanitizerReport(in: log) { throw failure("daemon \(index) printed a sanitizer report:\n\(report)") }
        }
        switch exit.actionOutcome {
        case .failed(let error)?:
            throw failure("the host action failed: \(error)")
        case .stillRunning?:
            throw failure("the host action did not return within \(timeout) of QEMU's exit")
        case .returned?, nil:
            break
        }
        switch exit.qemu {
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
            daemonLogs: daemonLogs, elapsed: ContinuousClock.now - start)
    }

    private enum QEMUExit { case exited(Int32), timedOut }

    /// Runs QEMU until it exits or `timeout` passes (then kills it). `whileRunning` starts what
    /// runs beside it (the host action); `afterExit` ends that once QEMU is gone.
    private static func runQEMU(
        _ qemuPath: String, arguments: [String], logPath: String, timeout: Duration,
        whileRunning: (ChildProcess) -> HostActionThread?,
        afterExit: (HostActionThread?) -> HostActionThread.Outcome?
    ) throws -> (qemu: QEMUExit, actionOutcome: HostActionThread.Outcome?) {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw GuestTestBedError("cannot create \(logPath): errno \(errno)") }
        defer { close(log) }
        let process = try ChildProcess(command: [qemuPath] + arguments, output: log)
        let action = whileRunning(process)
        let exit: QEMUExit
        if let status = process.wait(timeout: timeout) {
            exit = .exited(status)
        } else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: nil)
            exit = .timedOut
        }
        return (exit, afterExit(action))
    }
}

/// The thread a host action runs on.
/// Sendable by hand (@unchecked): `error` is only touched under `lock`.
final class HostActionThread: @unchecked Sendable {
    enum Outcome { case returned, failed(any Error), stillRunning }

    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var error: (any Error)?

    /// Runs `action` on a new thread; `onError` runs there when it throws.
    static func start(
        _ action: @escaping @Sendable (GuestControl) throws -> Void, _ control: GuestControl,
        onError: @escaping @Sendable () -> Void
    ) -> HostActionThread {
        let thread = HostActionThread()
        Thread.detachNewThread {
            do {
                try action(control)
            } catch {
                thread.lock.lock()
                thread.error = error
                thread.lock.unlock()
                onError()
            }
            thread.done.signal()
        }
        return thread
    }

    func join(timeout: Duration) -> Outcome {
        guard done.wait(timeout: .now() + timeout.timeInterval) == .success else { return .stillRunning }
        lock.lock()
        defer { lock.unlock() }
        return error.map { .failed($0) } ?? .returned
    }
}
