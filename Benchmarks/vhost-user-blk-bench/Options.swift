// Command line: `run` and `verify`, each with `--key value` options.
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage:
      vhost-user-blk-bench run --socket PATH [--workload randread|randwrite|seqread|seqwrite] [--bs BYTES]
                               [--depth N] [--queues N] [--seconds S] [--ramp S] [--size BYTES]
                               [--threads N] [--cpus LIST] [--queue-size N]
          Sends one FLUSH, then keeps DEPTH requests in flight on each queue, polling for completions, and prints
          `iops=… mbps=… p50_us=… p99_us=…` (plus a few more key=value fields) on one line.
      vhost-user-blk-bench verify --socket PATH [--queues N] [--depth N] [--bs BYTES] [--size BYTES]
                                  [--seconds S] [--threads N] [--cpus LIST] [--seed N]
          Writes a pattern stamped with each 4 KiB block's offset and a per-pass seed over the first
          SIZE bytes from all queues, reads it back through other queues and checks it. Passes
          repeat with new seeds until SECONDS have passed (at least one pass). Exit 0 with
          `verify: OK blocks=N`, or 1 with the first mismatch.
      vhost-user-blk-bench probe --socket PATH
          Exit 0 when something accepts connections on PATH (nothing is sent), else 1.
    Sizes accept K, M, G suffixes (powers of 1024). THREADS defaults to min(QUEUES, CPUs the process
    may run on): a thread polls its queues in turn. CPUS pins thread i to the i-th CPU of LIST.
    """

struct UsageError: Error, CustomStringConvertible { let description: String }

/// `--key value` pairs after the mode word.
struct Arguments {
    let mode: String
    private var values: [String: String] = [:]

    init(_ argv: [String]) throws {
        guard argv.count >= 2 else { throw UsageError(description: "missing mode (run or verify)") }
        mode = argv[1]
        var i = 2
        while i < argv.count {
            let key = argv[i]
            guard key.hasPrefix("--"), i + 1 < argv.count else {
                throw UsageError(description: "expected --key value, got '\(key)'")
            }
            values[String(key.dropFirst(2))] = argv[i + 1]
            i += 2
        }
    }

    /// Fails on options the mode does not know, so that a typo is not silently ignored.
    func checkKnown(_ known: Set<String>) throws {
        for key in values.keys where !known.contains(key) {
            throw UsageError(description: "unknown option --\(key) for \(mode)")
        }
    }

    func string(_ key: String) -> String? { values[key] }

    func required(_ key: String) throws -> String {
        guard let v = values[key] else { throw UsageError(description: "--\(key) is required") }
        return v
    }

    func int(_ key: String, _ fallback: Int) throws -> Int {
        guard let text = values[key] else { return fallback }
        guard let v = Int(text) else { throw UsageError(description: "--\(key): not an integer: \(text)") }
        return v
    }

    func double(_ key: String, _ fallback: Double) throws -> Double {
        guard let text = values[key] else { return fallback }
        guard let v = Double(text), v >= 0 else { throw UsageError(description: "--\(key): not a duration: \(text)") }
        return v
    }

    /// A byte count with an optional K/M/G suffix, or nil when absent.
    func bytes(_ key: String) throws -> UInt64? {
        guard let text = values[key] else { return nil }
        var digits = Substring(text)
        var scale: UInt64 = 1
        switch digits.last?.uppercased() {
        case "K": scale = 1 << 10
        case "M": scale = 1 << 20
        case "G": scale = 1 << 30
        default: break
        }
        if scale != 1 { digits = digits.dropLast() }
        guard let v = UInt64(digits) else { throw UsageError(description: "--\(key): not a size: \(text)") }
        return v * scale
    }

    /// A comma-separated CPU list (`0,1` or `0-3`), or nil when absent.
    func cpus(_ key: String) throws -> [Int]? {
        guard let text = values[key] else { return nil }
        var cpus: [Int] = []
        for part in text.split(separator: ",") {
            let ends = part.split(separator: "-").map { Int($0) }
            switch ends.count {
            case 1 where ends[0] != nil: cpus.append(ends[0]!)
            case 2 where ends[0] != nil && ends[1] != nil && ends[0]! <= ends[1]!: cpus += Array(ends[0]!...ends[1]!)
            default: throw UsageError(description: "--\(key): not a CPU list: \(text)")
            }
        }
        return cpus
    }
}
