#if canImport(Glibc)
import Glibc
#endif

/// What a process holds at one moment, read from /proc: resident memory, threads, open descriptors.
struct ResourceSample: Equatable {
    var rssKiB: Int
    /// Threads the daemon made itself (everything but libdispatch's pool).
    var threads: Int
    /// libdispatch's worker threads (named after their root queue, "...-qos..."), which its pool
    /// starts and retires on its own schedule (blk's resize timer runs there).
    var poolThreads: Int
    var descriptors: Int

    /// Reads /proc/PID/status (VmRSS, Threads) and counts /proc/PID/fd; nil when the process is gone.
    init?(pid: pid_t) {
        guard let status = readSmallFile("/proc/\(pid)/status") else { return nil }
        var rss: Int?, threads: Int?
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2 else { continue }
            if fields[0] == "VmRSS:" { rss = Int(fields[1]) }
            if fields[0] == "Threads:" { threads = Int(fields[1]) }
        }
        guard let rss, let threads, let fds = countEntries("/proc/\(pid)/fd") else { return nil }
        let pool = threadNames(pid).count { $0.contains("qos") }
        rssKiB = rss
        self.threads = threads - pool
        poolThreads = pool
        descriptors = fds
    }

    init(rssKiB: Int, threads: Int, poolThreads: Int, descriptors: Int) {
        self.rssKiB = rssKiB
        self.threads = threads
        self.poolThreads = poolThreads
        self.descriptors = descriptors
    }
}

/// The text of a small file (a /proc entry), or nil when it cannot be read.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return n == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
        bytes.append(contentsOf: chunk[..<n])
    }
}

/// The names of the entries (besides . and ..) of a directory, or nil when it cannot be listed.
func directoryEntries(_ path: String) -> [String]? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

func countEntries(_ path: String) -> Int? { directoryEntries(path)?.count }

/// The name (comm) of every thread of `pid`.
func threadNames(_ pid: pid_t) -> [String] {
    (directoryEntries("/proc/\(pid)/task") ?? []).compactMap { readSmallFile("/proc/\(pid)/task/\($0)/comm") }
}

/// Resource samples of one daemon over a soak: the baseline an idle daemon must return to, and the
/// resident-memory series used to judge growth.
struct ResourceHistory {
    /// Taken at the first idle moment after the warm-up.
    private(set) var baseline: ResourceSample?
    /// The first and the latest idle sample.
    private(set) var first: ResourceSample?
    private(set) var last: ResourceSample?
    /// The highest values seen at any time, front-end connected or not.
    private(set) var peak = ResourceSample(rssKiB: 0, threads: 0, poolThreads: 0, descriptors: 0)
    /// Idle resident memory after the warm-up, one value every few seconds.
    private(set) var rssSeries: [Int] = []

    mutating func recordPeak(_ s: ResourceSample) {
        peak = ResourceSample(rssKiB: max(peak.rssKiB, s.rssKiB), threads: max(peak.threads, s.threads),
                              poolThreads: max(peak.poolThreads, s.poolThreads), descriptors: max(peak.descriptors, s.descriptors))
    }

    /// Records an idle sample; after the warm-up, the first one becomes the baseline.
    mutating func recordIdle(_ s: ResourceSample, warmedUp: Bool, addToSeries: Bool) {
        recordPeak(s)
        if first == nil { first = s }
        last = s
        if warmedUp && baseline == nil { baseline = s }
        if warmedUp && addToSeries { rssSeries.append(s.rssKiB) }
    }

    /// Median idle RSS of the first and of the last quarter of the series (nil with fewer than 8 samples).
    var rssQuarterMedians: (first: Int, last: Int)? {
        guard rssSeries.count >= 8 else { return nil }
        let quarter = rssSeries.count / 4
        func median(_ values: ArraySlice<Int>) -> Int { values.sorted()[values.count / 2] }
        return (median(rssSeries.prefix(quarter)), median(rssSeries.suffix(quarter)))
    }
}
