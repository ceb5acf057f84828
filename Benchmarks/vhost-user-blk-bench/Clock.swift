// Monotonic time in nanoseconds (clock_gettime through the vDSO: no system call).
#if canImport(Glibc)
import Glibc
#endif

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func nanoseconds(_ seconds: Double) -> UInt64 { UInt64(seconds * 1e9) }
