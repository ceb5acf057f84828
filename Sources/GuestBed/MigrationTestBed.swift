// Live migration of a real guest between two QEMUs, each attached to its own daemon instance.
//
// The guest boots on the source QEMU; the destination QEMU waits with `-incoming`. A choreography
// (the test's code) drives both through QMP and talks to the guest script through each side's serial
// ports: it starts the migration, holds it, lets it finish. The script's output begins on the source
// and ends on the destination; the bed joins both. Guests run one pair at a time, like GuestTestBed's.
//
//     let result = try MigrationTestBed.run(source: blkA, destination: blkB, modules: ["virtio_blk"],
//                                           script: script, timeout: .seconds(90)) { control in
//         try control.waitForLine("@@migrate", on: .source, timeout: .seconds(30))
//         try control.startMigration()
//         try control.finishMigration(timeout: .seconds(60))
//         try control.send("migrated", to: .destination)
//     }

import Foundation
import Glibc
import VhostUserTesting

/// Boots a guest on a source QEMU and migrates it to a destination QEMU (see the file comment).
public enum MigrationTestBed {
    /// One of the two QEMUs.
    public enum Side: Int, Sendable { case source = 0, destination = 1 }

    /// Runs `script` in a guest with `cpus` CPUs and `memoryMiB` of RAM on the source QEMU attached to
    /// `source` (its kernel command line extended by `kernelArguments`); the destination QEMU, attached to
    /// `destination`, waits for the migration. `choreography`
    /// runs while both QEMUs run; afterwards the bed waits for the guest (now on the destination) to
    /// finish its script, within `timeout` overall.
    public static func run(
        source: GuestDaemon, destination: GuestDaemon, modules: [String], script: String, timeout: Duration,
        cpus: Int = 2, memoryMiB: Int = 256, machine: GuestMachine = .standard, kernelArguments: String = "",
        choreography: (MigrationControl) throws -> Void
    ) throws -> MigrationResult {
        GuestTestBed.guestLock.lock()
        defer { GuestTestBed.guestLock.unlock() }
        let start = ContinuousClock.now
        let (kernel, initramfsModules) = try machine.kernelAndModules(modules)
        let qemuPath = try machine.qemuPath()

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("migration-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }

        let daemons = DaemonSet(daemons: [source, destination], directory: tmp)
        defer { daemons.stopAll() }
        try daemons.startAll(timeout: timeout)

        let nonce = UUID().uuidString
        let initramfs = "\(tmp)/initramfs.cpio"
        try Initramfs.build(modules: initramfsModules, script: script, nonce: nonce).write(to: URL(fileURLWithPath: initramfs))
        let migrationSocket = "\(tmp)/migration.sock"

        var qemus: [ChildProcess] = []
        var watchers: [OutputWatcher] = []
        var commandLines: [String] = []
        defer { for qemu in qemus { qemu.kill(SIGKILL); _ = qemu.wait(timeout: .seconds(10)) } }
        for side in [Side.source, .destination] {
            let name = side == .source ? "source" : "destination"
            let input = "\(tmp)/\(name)-input"
            for fifo in ["\(input).in", "\(input).out"] where mkfifo(fifo, 0o600) != 0 {
                throw GuestTestBedError("mkfifo \(fifo): errno \(errno)")
            }
            watchers.append(try OutputWatcher(path: "\(tmp)/\(name)-output.log"))
            var arguments = [
                // One TCG thread for all vCPUs: multi-threaded TCG sometimes trips QEMU 10.0's
                // "iotlb_to_section: Assertion `section_index < d->map.sections_nb'" while a
                // migration changes the memory map under a running vCPU (seen once in a full run).
                "-accel", "tcg,thread=single", "-cpu", "max",
                "-machine", "q35,memory-backend=mem",
                "-object", "memory-backend-memfd,id=mem,size=\(memoryMiB)M,share=on", "-m", "\(memoryMiB)M",
                "-smp", "\(cpus)", "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
                "-serial", "file:\(tmp)/\(name)-console.log", "-serial", "file:\(tmp)/\(name)-output.log",
                "-serial", "pipe:\(input)",
                "-qmp", "unix:\(tmp)/\(name)-qmp.sock,server=on,wait=off",
                "-kernel", kernel, "-initrd", initramfs, "-append", "console=ttyS0 panic=-1 \(kernelArguments)",
                "-chardev", "socket,id=c0,path=\(daemons.sockets[side.rawValue])\(source.qemuChardevOptions)",
                "-device", "\(source.qemuDevice),chardev=c0\(source.qemuDeviceOptions)",
            ]
            if side == .destination { arguments += ["-incoming", "unix:\(migrationSocket)"] }
            let log = open("\(tmp)/\(name)-qemu.log", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard log >= 0 else { throw GuestTestBedError("cannot create the QEMU log: errno \(errno)") }
            defer { close(log) }
            commandLines.append(([qemuPath] + arguments).joined(separator: " "))
            qemus.append(try ChildProcess(command: [qemuPath] + arguments, output: log))
        }

        func failure(_ what: String) -> GuestTestBedError {
            var text = "\(what)\n"
            for (index, name) in ["source", "destination"].enumerated() {
                text += "\(name) QEMU: \(commandLines[index])\n"
                text += "\(name) QEMU output:\n\(tail(readText("\(tmp)/\(name)-qemu.log")))\n"
                text += "\(name) console (tail):\n\(tail(readText("\(tmp)/\(name)-console.log")))\n"
                text += "\(name) guest output:\n\(tail(readText("\(tmp)/\(name)-output.log")))\n"
                text += "\(name) daemon log:\n\(tail(daemons.logs[index]))\n"
            }
            return GuestTestBedError(text)
        }

        let control: MigrationControl
        do {
            control = MigrationControl(
                qmp: [try QMPClient(path: "\(tmp)/source-qmp.sock"), try QMPClient(path: "\(tmp)/destination-qmp.sock")],
                outputs: watchers, inputs: ["\(tmp)/source-input.in", "\(tmp)/destination-input.in"],
                migrationSocket: migrationSocket)
            try choreography(control)
        } catch {
            throw failure("the choreography failed: \(error)")
        }
        guard let status = qemus[1].wait(timeout: timeout - (ContinuousClock.now - start)) else {
            throw failure("the guest did not finish on the destination within \(timeout)")
        }
        watchers.forEach { $0.finish() }
        _ = try? control.qmp[0].execute("quit", timeout: .seconds(5))
        _ = qemus[0].wait(timeout: .seconds(10))
        guard status == 0 else { throw failure("the destination QEMU exited with status \(status)") }

        daemons.stopAll()
        let logs = daemons.logs
        for (index, log) in logs.enumerated() {
            if let report = sanitizerReport(in: log) { throw failure("daemon \(index) printed a sanitizer report:\n\(report)") }
        }
        let outputs = ["source", "destination"].map { readText("\(tmp)/\($0)-output.log").replacingOccurrences(of: "\r", with: "") }
        guard let parsed = Initramfs.parseOutput(outputs.joined(), nonce: nonce) else {
            throw failure("the guest output has no complete result markers")
        }
        let console = ["source", "destination"].map { readText("\(tmp)/\($0)-console.log") }.joined(separator: "\n--- migrated ---\n")
        return MigrationResult(
            guest: GuestResult(output: parsed.output, status: parsed.status, consoleLog: console, daemonLogs: logs,
                               elapsed: ContinuousClock.now - start),
            sourceOutput: outputs[0], destinationOutput: outputs[1], migration: control.finalInfo)
    }
}

/// What a migration run produced: the guest's result (output joined across both sides, daemon logs
/// source first) and each side's part of the output.
public struct MigrationResult: Sendable {
    public var guest: GuestResult
    /// What the guest printed while it ran on the source, and on the destination.
    public var sourceOutput: String
    public var destinationOutput: String
    /// query-migrate's answer once the migration completed (status, total time, RAM figures).
    public var migration: String
}

/// What a choreography can do while both QEMUs run. One thread at a time.
public final class MigrationControl {
    /// QMP on the source and on the destination.
    public let qmp: [QMPClient]
    private let outputs: [OutputWatcher]
    private let inputs: [String]
    private let migrationSocket: String
    /// query-migrate's answer after `finishMigration`.
    public private(set) var finalInfo = ""

    init(qmp: [QMPClient], outputs: [OutputWatcher], inputs: [String], migrationSocket: String) {
        self.qmp = qmp
        self.outputs = outputs
        self.inputs = inputs
        self.migrationSocket = migrationSocket
    }

    /// Waits until the guest prints exactly `line` on `side`'s output port.
    public func waitForLine(_ line: String, on side: MigrationTestBed.Side, timeout: Duration) throws {
        _ = try waitForLine(on: side, timeout: timeout) { $0 == line }
    }

    /// Waits until the guest prints a line for which `predicate` holds on `side`'s output port.
    @discardableResult
    public func waitForLine(on side: MigrationTestBed.Side, timeout: Duration, where predicate: (String) -> Bool) throws -> String {
        try outputs[side.rawValue].waitForLine(timeout: timeout, where: predicate)
    }

    /// Everything the guest has printed on `side`'s output port so far.
    public func output(of side: MigrationTestBed.Side) -> String { outputs[side.rawValue].text }

    /// Sends `line` to the guest script (`read -r VARIABLE <&3`) through `side`'s input port.
    public func send(_ line: String, to side: MigrationTestBed.Side) throws {
        try GuestControl.write(line, toInput: inputs[side.rawValue])
    }

    /// Sets migration `parameters` on the source (migrate-set-parameters), e.g. `max-bandwidth`.
    public func setParameters(_ parameters: [String: Any]) throws {
        try qmp[0].execute("migrate-set-parameters", parameters)
    }

    /// Starts migrating to the destination with `parameters`, MIGRATION events on.
    public func startMigration(_ parameters: [String: Any] = [:]) throws {
        try qmp[0].execute("migrate-set-capabilities", ["capabilities": [["capability": "events", "state": true]]])
        if !parameters.isEmpty { try setParameters(parameters) }
        try qmp[0].execute("migrate", ["uri": "unix:\(migrationSocket)"])
    }

    /// query-migrate on the source.
    public func info() throws -> [String: Any] {
        try qmp[0].execute("query-migrate") as? [String: Any] ?? [:]
    }

    /// Waits until the source has sent all of RAM once (its second dirty-bitmap sync), checking every
    /// 50 ms up to `timeout`; throws if the migration failed or already completed.
    public func waitForFirstPass(timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let info = try info()
            let status = info["status"] as? String ?? "?"
            guard status == "active" || status == "setup" else { throw GuestTestBedError("migration is \(status), not active, before its first pass ended: \(info)") }
            if let ram = info["ram"] as? [String: Any], (ram["dirty-sync-count"] as? Int ?? 0) >= 2 { return }
            guard ContinuousClock.now < deadline else { throw GuestTestBedError("the first RAM pass did not end within \(timeout): \(info)") }
            _ = poll(nil, 0, 50)
        }
    }

    /// Waits for the MIGRATION event that ends the migration and requires it to be `completed`.
    @discardableResult
    public func finishMigration(timeout: Duration) throws -> [String: Any] {
        let data = try qmp[0].waitForEvent("MIGRATION", timeout: timeout) { ["completed", "failed", "cancelled"].contains($0["status"] as? String ?? "") }
        let info = try info()
        finalInfo = String(decoding: (try? JSONSerialization.data(withJSONObject: info, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
        guard data["status"] as? String == "completed", info["status"] as? String == "completed" else {
            throw GuestTestBedError("migration ended as \(data["status"] ?? "?"): \(finalInfo)")
        }
        return info
    }
}
