// Why the systemd bed could not do what it was asked, with the diagnostics in the description.

/// A failure of the systemd bed: a missing root, a container that did not boot, a command that
/// failed or timed out, a unit that did not reach a state in time.
public struct SystemdBedError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
