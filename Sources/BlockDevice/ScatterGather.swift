#if canImport(Glibc)
import Glibc
#endif

/// Fills `iov` with the bytes of `segments` from `skip` on, `length` bytes in all: a request's data
/// without its header (writes) or without its status byte (reads). Returns the iovec count, or nil
/// when more than `capacity` are needed or the segments hold fewer bytes.
@inline(__always)
func gather(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, skip: Int, length: Int,
            into iov: UnsafeMutablePointer<iovec>, capacity: Int) -> Int? {
    var toSkip = skip
    var left = length
    var count = 0
    for s in segments where left > 0 {
        if toSkip >= s.count { toSkip -= s.count; continue }
        let n = min(s.count - toSkip, left)
        guard count < capacity else { return nil }
        iov[count] = iovec(iov_base: s.baseAddress! + toSkip, iov_len: n)
        count += 1
        left -= n
        toSkip = 0
    }
    return left == 0 ? count : nil
}

/// Whether every buffer of `iov` starts and ends on an `alignment` boundary (what O_DIRECT needs).
@inline(__always)
func isAligned(_ iov: UnsafePointer<iovec>, count: Int, to alignment: Int) -> Bool {
    let mask = alignment - 1
    for i in 0..<count where (Int(bitPattern: iov[i].iov_base) | iov[i].iov_len) & mask != 0 { return false }
    return true
}
