#if canImport(Glibc)
import Glibc
#endif

/// Reads what is there on a socket without waiting (up to `limit` bytes): a host side's output in a
/// device test.
public func readAvailable(_ fd: Int32, limit: Int = 1 << 20) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while out.count < limit {
        let n = recv(fd, &chunk, min(chunk.count, limit - out.count), Int32(MSG_DONTWAIT))
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}
