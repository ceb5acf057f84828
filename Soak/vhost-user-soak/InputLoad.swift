import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-input, a synthetic keyboard: each eventq request is one 8-byte buffer (poisoned first),
/// and for each the profile sends one single-event batch through the control socket (`event EV_SYN
/// SYN_REPORT 0`), so there is always an event for every buffer; events left over when a connection
/// ends wait for the next one's buffers. A completion must be the whole event, 8 bytes of SYN_REPORT
/// (also what a buffer the device held when its queue stopped comes back with). Statusq requests carry LED events,
/// completed with 0 bytes. The control plane: the config space names the device.
final class InputLoad: LoadProfile {
    static let name = "input"
    static let deviceName = "soak keyboard"

    private enum Kind { case event, status }
    private var pending: [Int: Kind] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0
    let controlPath: String
    private var control: Int32 = -1

    init(files: String) throws { controlPath = "\(files)/control.sock" }
    deinit { if control >= 0 { close(control) } }

    var executable: String { "vhost-user-input" }
    var arguments: [String] { ["--kind", "keyboard", "--name", Self.deviceName, "--control-socket", controlPath] }
    var maxQueues: Int { 2 }
    var maxQueueSize: Int { 256 }
    var slabBytes: Int { 64 }

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        nextTag += 1
        if queue == 1 {
            // LED_CAPSL on or off.
            let event: UInt64 = 0x11 | 1 << 16 | UInt64(random.next() & 1) << 32
            slab.storeBytes(of: event.littleEndian, toByteOffset: 0, as: UInt64.self)
            pending[nextTag] = .status
            return LoadRequest(buffers: [SlabBuffer(offset: 0, length: 8, writable: false)], tag: nextTag)
        }
        guard sendEvent() else { return nil }
        slab.storeBytes(of: UInt64.max, toByteOffset: 0, as: UInt64.self)
        pending[nextTag] = .event
        return LoadRequest(buffers: [SlabBuffer(offset: 0, length: 8, writable: true)], tag: nextTag)
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let kind = pending.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        switch kind {
        case .status:
            return usedLength == 0 ? nil : "statusq completion of \(usedLength) bytes (the device writes none)"
        case .event:
            guard usedLength == 8 else { return "eventq completion of \(usedLength) bytes, not one 8-byte event" }
            let word = UInt64(littleEndian: slab.load(fromByteOffset: 0, as: UInt64.self))
            guard word == 0 else { return "eventq buffer holds \(String(word, radix: 16)), not SYN_REPORT" }
            bytesVerified += 8
            return nil
        }
    }

    func abandon(_ tag: Int) { pending[tag] = nil }

    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String? {
        guard setup.protocolFeatures.contains(.config) else { return nil }
        _ = try frontend.setConfig(offset: 0, bytes: [1, 0])  // ID_NAME
        let config = try frontend.getConfig(offset: 0, count: 8 + Self.deviceName.utf8.count).data
        let name = String(decoding: config[8...], as: UTF8.self)
        return config[2] == UInt8(Self.deviceName.utf8.count) && name == Self.deviceName
            ? nil : "config ID_NAME reads size \(config[2]) \"\(name)\", not \"\(Self.deviceName)\""
    }

    /// Sends one single-event batch and reads whatever replies have arrived (the daemon does not read
    /// a client's lines while replies to it wait). Reconnects when the daemon was restarted.
    private func sendEvent() -> Bool {
        if control < 0 { control = (try? UnixListener.connect(to: controlPath)).map { dup($0.rawValue) } ?? -1 }
        guard control >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while recv(control, &buffer, buffer.count, Int32(MSG_DONTWAIT)) > 0 {}
        let line = Array("event EV_SYN SYN_REPORT 0\n".utf8)
        guard send(control, line, line.count, Int32(MSG_NOSIGNAL)) == line.count else {
            close(control)
            control = -1
            return false
        }
        return true
    }
}
