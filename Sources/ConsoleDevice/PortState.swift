import VhostUserKit

/// One port's state: its host side, the bytes on their way each direction, and what the driver and
/// the device told each other about it. It belongs to the device and survives queue-group restarts;
/// a running group's handler has it to itself.
final class PortState {
    let id: Int
    let name: String
    let endpoint: HostEndpoint
    /// Guest output not yet written to the host.
    var toHost: ByteRing
    /// Host input not yet given to the guest.
    var toGuest: ByteRing

    // The control handshake (MULTIPORT). Reset when the driver resets the device.
    /// DEVICE_ADD was sent.
    var added = false
    /// The driver answered PORT_READY 1.
    var ready = false
    /// The guest has the port open (PORT_OPEN from the driver; always for a single-port device).
    var guestOpen = false
    /// What the device last told the driver with PORT_OPEN.
    var reportedOpen = false
    /// The host peer left: PORT_OPEN 0 goes to the driver once `toGuest` is delivered.
    var closePending = false

    // The group's watches (gone with the group that made them).
    var ioWatch: Watch?
    var outputWatch: Watch?
    var listenerWatch: Watch?

    /// Output would block: wait for `.writable`.
    var outputBlocked = false
    /// Standard input ended or cannot be watched (a regular file): no more host input.
    var inputClosed = false
    /// The console keeps only the newest bytes while nobody reads: said once per episode.
    var overflowReported = false

    init(id: Int, name: String, endpoint: HostEndpoint, outputBytes: Int, inputBytes: Int) {
        self.id = id
        self.name = name
        self.endpoint = endpoint
        toHost = ByteRing(capacity: outputBytes)
        toGuest = ByteRing(capacity: inputBytes)
    }

    /// The console port (hvc0): port 0.
    var isConsole: Bool { id == 0 }

    /// Forgets the driver's side of the handshake (the driver reset the device or went away).
    func resetGuestSide() {
        added = false
        ready = false
        guestOpen = false
        reportedOpen = false
        closePending = false
    }

    func forgetWatches() {
        ioWatch = nil
        outputWatch = nil
        listenerWatch = nil
    }
}
