#if canImport(Glibc)
import Glibc
#endif

/// Waits until one of `descriptors` is readable (or hung up) and returns its position, or nil on timeout.
/// Nothing is read or drained.
public func waitReadable(_ descriptors: [Int32], timeoutMilliseconds: Int32 = -1) throws(SystemError) -> Int? {
    var fds = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    let n = try systemCall("poll") { poll(&fds, nfds_t(fds.count), timeoutMilliseconds) }
    guard n > 0 else { return nil }
    return fds.firstIndex { $0.revents != 0 }
}

/// Waits until `descriptor` is readable (or hung up); false on timeout. Allocates nothing.
public func waitReadable(_ descriptor: Int32, timeoutMilliseconds: Int32) -> Bool {
    var p = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
    return ((try? systemCall("poll") { poll(&p, 1, timeoutMilliseconds) }) ?? 0) > 0
}
