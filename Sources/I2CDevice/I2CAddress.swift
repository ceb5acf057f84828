/// An I2C client address: 7-bit (0x00-0x7f) or 10-bit (0x000-0x3ff), which are different address spaces.
public struct I2CAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address bits (at most 7 or 10 of them).
    public let value: UInt16
    public let isTenBit: Bool

    public init?(sevenBit value: UInt16) {
        guard value <= 0x7f else { return nil }
        self.value = value
        isTenBit = false
    }

    public init?(tenBit value: UInt16) {
        guard value <= 0x3ff else { return nil }
        self.value = value
        isTenBit = true
    }

    /// Decodes the `addr` field of a request's out_hdr (virtio 1.2, 5.19.6: 7-bit addresses in bits 7:1;
    /// 10-bit ones as 11110 A9 A8 in bits 7:1 and A7-A0 in bits 15:8). Bit 0 is always clear; a
    /// 7-bit address has nothing in the high byte. Nil for any other pattern.
    public init?(virtioField field: UInt16) {
        guard field & 1 == 0 else { return nil }
        let low = field & 0xff, high = field >> 8
        if low & 0xf8 == 0xf0 {
            value = (low & 0x06) << 7 | high
            isTenBit = true
        } else {
            guard high == 0 else { return nil }
            value = low >> 1
            isTenBit = false
        }
    }

    /// The `addr` field a driver puts in out_hdr for this address.
    public var virtioField: UInt16 {
        isTenBit ? (value & 0xff) << 8 | 0xf0 | (value >> 7) & 0x06 : value << 1
    }

    /// Parses `0x50` (7-bit) or `0x123/10` (10-bit); `/7` may be written too. Decimal works as well.
    public init?(parsing text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let number = parseInteger(parts[0]), number <= 0x3ff else { return nil }
        switch parts.count == 2 ? String(parts[1]) : "7" {
        case "7": self.init(sevenBit: UInt16(number))
        case "10": self.init(tenBit: UInt16(number))
        default: return nil
        }
    }

    public var description: String {
        let hex = String(value, radix: 16)
        return isTenBit ? "0x" + String(repeating: "0", count: max(0, 3 - hex.count)) + hex + "/10"
                        : "0x" + String(repeating: "0", count: max(0, 2 - hex.count)) + hex
    }

    /// A dense index over both address spaces (7-bit first), for tables.
    var tableIndex: Int { isTenBit ? 0x80 + Int(value) : Int(value) }
    static let tableSize = 0x80 + 0x400
}

/// Parses a decimal or `0x` hexadecimal integer.
func parseInteger(_ text: some StringProtocol) -> Int? {
    let s = text.lowercased()
    if s.hasPrefix("0x") { return Int(s.dropFirst(2), radix: 16) }
    return Int(s)
}
