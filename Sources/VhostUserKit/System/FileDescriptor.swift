#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor owned by exactly one object, closed when that object goes away. Messages carry
/// their descriptors this way, so a rejected message can never leak one.
public final class OwnedDescriptor: Sendable {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    deinit { close(rawValue) }
}

/// Calls a system function, retrying on EINTR and turning -1 into a typed error.
@discardableResult
func systemCall<T: FixedWidthInteger>(_ name: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        if errno == EINTR { continue }
        throw SystemError(name, errno: errno)
    }
}
