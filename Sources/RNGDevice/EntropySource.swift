import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Where entropy comes from: a file or character device (default /dev/urandom), or getrandom(2).
public enum EntropySource: Sendable, Equatable, CustomStringConvertible {
    case file(String)
    case getrandom

    public static let defaultSource = EntropySource.file("/dev/urandom")

    public var description: String {
        switch self {
        case let .file(path): path
        case .getrandom: "getrandom(2)"
        }
    }

    /// Opens the source once; fails early (at start-up) when a file cannot be read.
    public func open() throws(EntropySourceError) -> OpenEntropySource {
        switch self {
        case .getrandom:
            return OpenEntropySource(file: nil)
        case let .file(path):
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EntropySourceError(path: path, errno: errno) }
            return OpenEntropySource(file: OwnedDescriptor(fd))
        }
    }
}

public struct EntropySourceError: Error, CustomStringConvertible {
    public let path: String
    public let errno: Int32
    public var description: String { "cannot open entropy source \(path): \(SystemError.describe(errno))" }
}

/// An opened entropy source that reads straight into guest buffers.
public final class OpenEntropySource: Sendable {
    private let file: OwnedDescriptor?
    init(file: OwnedDescriptor?) { self.file = file }

    /// Fills `buffer` as far as the source allows; returns the bytes produced (0 at end of a file or on error).
    @inline(__always)
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n: Int
            if let file {
                n = Glibc.read(file.rawValue, buffer.baseAddress, buffer.count)
            } else {
                n = vhu_getrandom(buffer.baseAddress, buffer.count)
            }
            if n < 0 && errno == EINTR { continue }
            return max(0, n)
        }
    }
}
