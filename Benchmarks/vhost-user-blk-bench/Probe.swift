// `probe`: whether something accepts connections on a Unix socket (scripts/bench-blk waits for
// qemu-storage-daemon with it, which prints nothing when it is ready). Exit 0 when a connect()
// succeeds, 1 otherwise; nothing is sent.
#if canImport(Glibc)
import Glibc
#endif

func probeCommand(_ args: Arguments) throws {
    try args.checkKnown(["socket"])
    let path = try args.required("socket")
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { throw UsageError(description: "--socket: path too long") }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    exit(rc == 0 ? 0 : 1)
}
