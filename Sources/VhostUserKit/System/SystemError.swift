#if canImport(Glibc)
import Glibc
#endif

/// A system call that failed: what was called (with the context a reader needs, such as a path) and
/// the errno it set. The one place where an errno becomes text.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// "call: reason", e.g. "sendmsg: Broken pipe".
    public var description: String { "\(call): \(Self.describe(errno))" }

    /// The system's text for an errno value ("Broken pipe").
    public static func describe(_ errno: Int32) -> String { String(cString: strerror(errno)) }
}
