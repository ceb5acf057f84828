import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// At most `maxBytes` of entropy per `periodMilliseconds` window (like the Stratos daemon's
/// `--max-bytes` / `--period`). Owned by the single queue worker that uses it.
public struct RateLimit: Sendable, Equatable {
    public var maxBytes: Int
    public var periodMilliseconds: Int
    public init(maxBytes: Int, periodMilliseconds: Int) {
        self.maxBytes = maxBytes
        self.periodMilliseconds = periodMilliseconds
    }
}

struct RateLimiter {
    let limit: RateLimit
    private var windowStart: UInt64 = 0
    private var used = 0

    init(_ limit: RateLimit) { self.limit = limit }

    /// Bytes still allowed in the current window (a new window starts when the old one has passed).
    mutating func available(now: UInt64) -> Int {
        if now &- windowStart >= periodNanoseconds {
            windowStart = now
            used = 0
        }
        return limit.maxBytes - used
    }

    mutating func consume(_ bytes: Int) { used += bytes }

    /// Milliseconds until the current window ends (at least 1).
    func millisecondsUntilRefill(now: UInt64) -> Int32 {
        let left = periodNanoseconds &- min(periodNanoseconds, now &- windowStart)
        return Int32(clamping: max(1, (left + 999_999) / 1_000_000))
    }

    private var periodNanoseconds: UInt64 { UInt64(limit.periodMilliseconds) * 1_000_000 }
}
