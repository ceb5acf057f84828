// vhost-user-soak: every daemon under mixed load for a set time, with a front-end that disconnects and
// reconnects at random points; fails on a lost, duplicated or wrong completion, a daemon that dies or
// logs an unexplained error, descriptors or threads not back to their idle baseline, or RSS growth.
// The daemons run in parallel, each driven by its own thread. Run by scripts/soak.
import ArgumentParser
import Foundation
import VhostUserKit

struct SoakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-soak",
        abstract: "Soak the vhost-user daemons: random load and random disconnects, then a table and a verdict.")

    @Option(help: "How long to run, in minutes (fractions allowed).")
    var minutes: Double = 30

    @Option(help: ArgumentHelp("Comma-separated daemons to run (default: all).", valueName: "names"))
    var daemons: String?

    @Option(help: "Seed for every random choice (default: a new one, printed).")
    var seed: UInt64?

    @Option(help: ArgumentHelp("Where the daemon executables are (default: this program's directory).", valueName: "dir"))
    var binDir: String?

    func validate() throws {
        guard minutes > 0, minutes <= 24 * 60 else { throw ValidationError("--minutes must be more than 0 and at most a day") }
        let known = SoakTarget.all.map(\.name)
        for name in selectedNames where !known.contains(name) {
            throw ValidationError("unknown daemon \(name); known: \(known.joined(separator: ", "))")
        }
    }

    private var selectedNames: [String] {
        daemons.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } ?? SoakTarget.all.map(\.name)
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let seed = self.seed ?? UInt64.random(in: 0...UInt64.max)
        let targets = SoakTarget.all.filter { selectedNames.contains($0.name) }
        let binaries = binDir ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let work = try makeWorkDirectory()
        print("soak: \(targets.map(\.name).joined(separator: ", ")) in parallel for \(minutes) min, seed \(seed)")
        print("soak: replay with --seed \(seed) --daemons \(targets.map(\.name).joined(separator: ",")); files in \(work)")

        var runners: [SoakRunner] = []
        for target in targets {
            let files = "\(work)/\(target.name)"
            try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
            let profile = try target.profile.init(files: files)
            try profile.prepare(binaries: binaries)
            let daemon = try DaemonUnderTest(executable: "\(binaries)/\(profile.executable)",
                                             arguments: profile.arguments + target.extraArguments,
                                             socketPath: "\(files)/sock", logPath: "\(files)/daemon.log")
            runners.append(SoakRunner(target: target, profile: profile, daemon: daemon, seed: seed,
                                      milliseconds: Int(minutes * 60_000)))
        }
        let threads = runners.map { runner in PosixThread { runner.run() } }
        threads.forEach { $0.join() }

        print(Report(runners: runners).render())
        let failed = runners.filter { !$0.stats.violations.isEmpty }
        // Keep the daemon logs of a failed run; the images go either way.
        for r in runners { try? FileManager.default.removeItem(atPath: "\(work)/\(r.target.name)/disk.img"); try? FileManager.default.removeItem(atPath: "\(work)/\(r.target.name)/rpmb.img") }
        if failed.isEmpty {
            try? FileManager.default.removeItem(atPath: work)
            print("soak: PASS (seed \(seed))")
        } else {
            print("soak: FAIL: \(failed.map(\.target.name).joined(separator: ", ")) (seed \(seed); logs in \(work))")
            throw ExitCode(1)
        }
    }

    /// A fresh directory on tmpfs for images, sockets and logs.
    private func makeWorkDirectory() throws -> String {
        var template = Array("/dev/shm/vhost-user-soak-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SoakError("\(SystemError("mkdtemp", errno: errno))") }
        return String(cString: made)
    }
}

SoakCommand.main()
