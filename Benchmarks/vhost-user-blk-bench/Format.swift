// Fixed-point number formatting without Foundation.

/// `value` with `digits` decimals, rounded half up (non-negative values only).
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite, value >= 0 else { return "0" }
    var scale: Double = 1
    for _ in 0..<digits { scale *= 10 }
    let scaled = UInt64((value * scale).rounded())
    let whole = scaled / UInt64(scale)
    guard digits > 0 else { return String(whole) }
    let fraction = String(scaled % UInt64(scale))
    return "\(whole).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
}
