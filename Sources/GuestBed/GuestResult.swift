// What comes back from a guest run, or why it failed.

/// What a guest run produced.
public struct GuestResult: Sendable {
    /// Everything the guest script wrote to stdout and stderr (carriage returns removed).
    public var output: String
    /// The guest script's exit status.
    public var status: Int32
    /// The guest kernel's console (first serial port), for diagnostics.
    public var consoleLog: String
    /// What each daemon printed, in the order of `daemons`.
    public var daemonLogs: [String]
    /// The run's wall time from when it had the machine to itself (guests run one at a time) to
    /// QEMU's exit: daemon start-up, boot, script.
    public var elapsed: Duration = .zero

    /// The output's `key=value` lines, the way guest scripts report what they measured.
    public var values: [String: String] {
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }
}

/// Why a guest run failed, with the diagnostics (QEMU's command line and output, the console's
/// and daemons' tails) in the description.
public struct GuestTestBedError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
