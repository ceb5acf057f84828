#if canImport(Glibc)
import Glibc
#endif

/// The engine of a queue whose real engine could not be made (no descriptor left for its wake-up):
/// every request fails with an I/O error at once, and the daemon keeps serving the others.
final class FailingEngine: IOEngine {
    var completionDescriptor: Int32? { nil }
    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool { false }
    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool { false }
    func flush(fd: Int32, tag: UInt16) -> Bool { false }
    var handlesRanges: Bool { true }
    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool { false }
    func submit() {}
    func reap(max: Int, wait: Bool, _ body: (UInt16, Int32) -> Void) -> Int { 0 }
    var hasCompletions: Bool { false }
    func shutdown() {}
}
