import VhostUserKit

/// Variants of a device's saved state that a daemon must refuse, each with nothing applied: damaged
/// bytes, a short stream, another device's kind, an unknown version, a payload one byte short or long.
public func hostileDeviceStates(of bytes: [UInt8]) throws -> [(what: String, bytes: [UInt8])] {
    let state = try DeviceState(decoding: bytes)
    var flipped = bytes
    flipped[bytes.count / 2] ^= 0x20
    return [
        ("a flipped bit", flipped),
        ("a truncated stream", Array(bytes.dropLast())),
        ("the header alone", Array(bytes.prefix(14))),
        ("another device's kind", DeviceState(kind: state.kind == "xxxx" ? "yyyy" : "xxxx", version: state.version, payload: state.payload).encoded()),
        ("an unknown version", DeviceState(kind: state.kind, version: state.version &+ 1, payload: state.payload).encoded()),
        ("a payload one byte short", DeviceState(kind: state.kind, version: state.version, payload: Array(state.payload.dropLast())).encoded()),
        ("a payload one byte long", DeviceState(kind: state.kind, version: state.version, payload: state.payload + [0]).encoded()),
        ("no state framing at all", [UInt8](repeating: 0x5a, count: 64)),
    ]
}
