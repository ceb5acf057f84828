// What every benchmark executable shares: `--key value` options and the clock it measures with.

import VhostUserKit

/// `--key value` pairs from a command line; anything else is ignored.
public struct BenchmarkArguments {
    public private(set) var values: [String: String] = [:]

    public init<Arguments: Sequence<String>>(_ arguments: Arguments) {
        var it = arguments.makeIterator()
        while let key = it.next() {
            guard key.hasPrefix("--") else { continue }
            values[String(key.dropFirst(2))] = it.next() ?? ""
        }
    }

    public func int(_ key: String, _ fallback: Int) -> Int { values[key].flatMap(Int.init) ?? fallback }
    public func double(_ key: String, _ fallback: Double) -> Double { values[key].flatMap(Double.init) ?? fallback }
    public func string(_ key: String, _ fallback: String) -> String { values[key] ?? fallback }
}

/// Seconds on the monotonic clock.
public func now() -> Double { Double(monotonicNanoseconds()) / 1e9 }
