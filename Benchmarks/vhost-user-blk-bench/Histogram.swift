// Request latencies in a log-linear histogram: 32 buckets per power of two (about 3% resolution),
// allocated once; recording is a few shifts and an increment.

final class LatencyHistogram {
    private static let subBits = 5
    private static let subCount = 1 << subBits
    private static let bucketCount = (64 - subBits + 1) << subBits

    private let counts: UnsafeMutablePointer<UInt64>
    private(set) var total: UInt64 = 0

    init() {
        counts = .allocate(capacity: Self.bucketCount)
        counts.initialize(repeating: 0, count: Self.bucketCount)
    }

    deinit { counts.deallocate() }

    @inline(__always)
    private static func index(_ value: UInt64) -> Int {
        if value < UInt64(subCount) { return Int(value) }
        let msb = 63 - value.leadingZeroBitCount
        let shift = msb - subBits
        return ((shift + 1) << subBits) + Int((value >> UInt64(shift)) & UInt64(subCount - 1))
    }

    /// The smallest value that falls into bucket `index`.
    private static func lowerBound(_ index: Int) -> UInt64 {
        if index < subCount { return UInt64(index) }
        let exponent = index >> subBits
        let mantissa = UInt64(subCount + (index & (subCount - 1)))
        return mantissa << UInt64(exponent - 1)
    }

    @inline(__always)
    func record(_ value: UInt64) {
        counts[Self.index(value)] &+= 1
        total &+= 1
    }

    func merge(_ other: LatencyHistogram) {
        for i in 0..<Self.bucketCount { counts[i] &+= other.counts[i] }
        total &+= other.total
    }

    /// The value below which `fraction` of the recorded values lie (the middle of its bucket), or 0.
    func percentile(_ fraction: Double) -> UInt64 {
        guard total > 0 else { return 0 }
        let rank = max(1, UInt64((Double(total) * fraction).rounded(.up)))
        var seen: UInt64 = 0
        for i in 0..<Self.bucketCount {
            seen &+= counts[i]
            if seen >= rank {
                let low = Self.lowerBound(i)
                let high = i + 1 < Self.bucketCount ? Self.lowerBound(i + 1) : low
                return low + (high - low) / 2
            }
        }
        return Self.lowerBound(Self.bucketCount - 1)
    }
}
