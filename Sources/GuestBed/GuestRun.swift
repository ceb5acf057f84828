// One guest of `GuestTestBed.runTogether`: what `GuestTestBed.run` takes as arguments.

import Foundation

/// A guest to boot: its daemons, modules, script and machine (see `GuestTestBed.run`).
public struct GuestRun: Sendable {
    public var daemons: [GuestDaemon]
    public var modules: [String]
    public var script: String
    public var timeout: Duration
    public var cpus: Int
    public var machine: GuestMachine
    public var tools: [String]
    public var hostAction: (@Sendable (GuestControl) throws -> Void)?

    public init(
        daemons: [GuestDaemon], modules: [String], script: String, timeout: Duration, cpus: Int = 1,
        machine: GuestMachine = .standard, tools: [String] = [],
        hostAction: (@Sendable (GuestControl) throws -> Void)? = nil
    ) {
        self.daemons = daemons
        self.modules = modules
        self.script = script
        self.timeout = timeout
        self.cpus = cpus
        self.machine = machine
        self.tools = tools
        self.hostAction = hostAction
    }
}

/// The results of guests booted together, filled from their threads.
/// Sendable by hand (@unchecked): `results` is only touched under `lock`.
final class GuestResults: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<GuestResult, any Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<GuestResult, any Error>) {
        lock.lock()
        defer { lock.unlock() }
        results[index] = result
    }
    var all: [Result<GuestResult, any Error>?] {
        lock.lock()
        defer { lock.unlock() }
        return results
    }
}
