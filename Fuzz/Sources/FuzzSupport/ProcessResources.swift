#if canImport(Glibc)
import Glibc
#endif

/// Open descriptors and threads of this process, read from /proc: after every input they must be back
/// where they were before it, or the code under test leaked one.
public struct ProcessResources: Equatable, CustomStringConvertible {
    public let descriptors: Int
    public let threads: Int

    /// Only the kinds of descriptor the kit and the harnesses make count (sockets, eventfds, epoll and
    /// io_uring instances, memfds): the sanitizer's symbolizer, started the first time libFuzzer prints
    /// a newly covered function, keeps pipes and /dev/null open for good.
    public static func now() -> ProcessResources {
        let kinds = ["socket:", "anon_inode:", "/memfd:"]
        return ProcessResources(descriptors: entries("/proc/self/fd") { target in kinds.contains { target.hasPrefix($0) } },
                         threads: entries("/proc/self/task") { _ in true })
    }

    /// Entries of a directory (without "." and "..") whose link target passes `counts`.
    private static func entries(_ path: String, counting counts: (String) -> Bool) -> Int {
        guard let dir = opendir(path) else { fatalError("cannot list \(path)") }
        defer { closedir(dir) }
        var count = 0
        var target = [CChar](repeating: 0, count: 64)
        while let entry = readdir(dir) {
            guard entry.pointee.d_name.0 != 0x2e else { continue }
            let n = withUnsafeBytes(of: entry.pointee.d_name) { name in
                readlinkat(dirfd(dir), name.baseAddress!.assumingMemoryBound(to: CChar.self), &target, 63)
            }
            if counts(text(target, n)) { count += 1 }
        }
        return count
    }

    /// What each open descriptor is (its /proc/self/fd link), for the report of a leak.
    static func openDescriptors() -> String {
        var names: [String] = []
        for fd in 0..<1024 where fcntl(Int32(fd), F_GETFD) >= 0 {
            var target = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/self/fd/\(fd)", &target, 255)
            names.append("\(fd)=\(text(target, n))")
        }
        return names.joined(separator: " ")
    }

    /// The first `count` bytes of a readlink result.
    private static func text(_ bytes: [CChar], _ count: Int) -> String {
        String(decoding: bytes.prefix(max(0, count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { "\(descriptors) descriptors, \(threads) threads" }

    /// Crashes (so libFuzzer saves the input) when `after` holds more than `before`.
    public static func expectNoLeak(before: ProcessResources, after: ProcessResources) {
        if after.descriptors > before.descriptors || after.threads > before.threads {
            fatalError("resource leak: \(before) before the input, \(after) after it; open now: \(openDescriptors())")
        }
    }
}
