import Crypto

/// The 256-bit RPMB authentication key. Its bytes never reach a log: every description is redacted.
public struct AuthenticationKey: Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public static let size = 32
    let bytes: [UInt8]
    let symmetric: SymmetricKey

    /// nil unless `bytes` is exactly 32 bytes.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        self.bytes = bytes
        self.symmetric = SymmetricKey(data: bytes)
    }

    init(copying raw: UnsafeRawBufferPointer) {
        self.init(Array(raw))!
    }

    public var description: String { "<authentication key>" }
    public var debugDescription: String { description }

    public static func == (a: Self, b: Self) -> Bool {
        a.bytes.withUnsafeBytes { x in b.bytes.withUnsafeBytes { y in constantTimeEqual(x, y) } }
    }

    /// HMAC-SHA256 over the authenticated bytes (`RPMBFrame.authenticatedRange`) of `count` consecutive
    /// frames at `frames` (virtio 1.2, 5.12.6.1: the concatenation of the frames' fields without stuff
    /// bytes and MAC), written into `mac` (32 bytes).
    public func mac(frames: UnsafeRawPointer, count: Int, into mac: UnsafeMutableRawBufferPointer) {
        var hmac = HMAC<SHA256>(key: symmetric)
        for i in 0..<count {
            hmac.update(data: UnsafeRawBufferPointer(start: frames + i * RPMBFrame.size + RPMBFrame.authenticatedRange.lowerBound,
                                                     count: RPMBFrame.authenticatedRange.count))
        }
        let code = hmac.finalize()
        code.withUnsafeBytes { mac.copyMemory(from: $0) }
    }

    /// Whether the MAC in the last of `count` frames at `frames` is the one this key gives them; the
    /// comparison takes the same time whichever byte differs.
    public func verify(frames: UnsafeMutableRawPointer, count: Int) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: RPMBFrame.macSize, alignment: 8) { expected in
            mac(frames: frames, count: count, into: expected)
            let last = FrameView(frames + (count - 1) * RPMBFrame.size)
            return constantTimeEqual(UnsafeRawBufferPointer(expected), UnsafeRawBufferPointer(last.keyOrMAC))
        }
    }

    /// Writes the MAC of `count` frames at `frames` into the last frame's key/MAC field.
    public func sign(frames: UnsafeMutableRawPointer, count: Int) {
        mac(frames: frames, count: count, into: FrameView(frames + (count - 1) * RPMBFrame.size).keyOrMAC)
    }
}

/// Compares two byte strings in time that depends only on their length.
@inline(never)
func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
