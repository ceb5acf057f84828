// One device's part of the demo: a guest that uses it, and what the demo checks and shows.

import Foundation
import GuestBed

/// A device shown by the demo. `run` boots its guest (through `GuestTestBed`), prints what the guest
/// and the daemon did, checks the result and returns a one-line summary, or throws `DemoFailure`.
/// `arguments` are extra options for the device's daemon from the command line.
struct DemoScene: Sendable {
    /// The name on the command line, e.g. `rng`.
    let name: String
    /// What the scene shows, for the usage text.
    let summary: String
    let run: @Sendable (_ arguments: [String]) throws -> String

    /// Every scene, in the order the demo runs them. A new device adds its scene here.
    static let all: [DemoScene] = [.rng, .block, .i2c, .rpmb, .gpio, .input, .console, .vsock, .sound]
}

/// Why a scene failed.
struct DemoFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Boots the scene's guest, printing what starts and then the guest's output and each daemon's log.
func runGuest(
    _ what: String, daemons: [GuestDaemon], modules: [String], script: String, cpus: Int = 1,
    machine: GuestMachine = .standard, tools: [String] = [], timeout: Duration = .seconds(180),
    hostAction: (@Sendable (GuestControl) throws -> Void)? = nil
) throws -> GuestResult {
    print("demo: \(what)")
    let result: GuestResult
    do {
        result = try GuestTestBed.run(
            daemons: daemons, modules: modules, script: script, timeout: timeout, cpus: cpus, machine: machine,
            tools: tools, hostAction: hostAction)
    } catch {
        print("\(error)")
        throw DemoFailure("the guest did not run (details above)")
    }
    print("--- guest output (exit status \(result.status)) ---")
    print(indented(result.output))
    for (daemon, log) in zip(daemons, result.daemonLogs) {
        print("--- \(daemon.displayName) log ---")
        print(indented(log))
    }
    guard result.status == 0 else { throw DemoFailure("the guest script exited with status \(result.status)") }
    return result
}

/// The lines of `text`, indented by two spaces, without a trailing empty line.
func indented(_ text: String) -> String {
    let body = text.hasSuffix("\n") ? String(text.dropLast()) : text
    return body.split(separator: "\n", omittingEmptySubsequences: false).map { "  \($0)" }.joined(separator: "\n")
}

extension GuestDaemon {
    var displayName: String {
        switch launch {
        case .product(let name): name
        case .command(let command): command.first ?? "daemon"
        case .listening(let socket): "backend on \(socket)"
        }
    }

    /// The daemon and its arguments, as a person would type them (without the socket).
    var commandLine: String { ([displayName] + arguments).joined(separator: " ") }
}

extension GuestResult {
    /// `name: value` lines of the output (the demo scripts print those for people to read).
    var labelled: [String: String] {
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            if let colon = line.firstIndex(of: ":") {
                values[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return values
    }
}
