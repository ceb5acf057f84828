/// What a simulated chip looks like: how many lines, their names, which lines are wired together in
/// loopback pairs (an output drives its partner's input), and which ones the host keeps for itself
/// (every request on them is refused).
public struct SimulatedChipLayout: Sendable, Equatable {
    public var lineCount: Int
    public var names: [String]
    public var loopbacks: [(Int, Int)] { loopbackPairs.map { ($0.a, $0.b) } }
    public var busy: Set<Int>
    var loopbackPairs: [Pair]

    struct Pair: Sendable, Equatable { let a: Int, b: Int }

    /// The most lines a virtio-gpio device has (ngpio is a le16).
    public static let maxLines = Int(UInt16.max)

    /// Checks that every line named exists and belongs to at most one loopback pair; `names` may be
    /// shorter than `lineCount` (the other lines have no name).
    public init(lineCount: Int, names: [String] = [], loopbacks: [(Int, Int)] = [], busy: Set<Int> = []) throws(LayoutError) {
        guard lineCount >= 1, lineCount <= Self.maxLines else { throw .lineCount(lineCount) }
        guard names.count <= lineCount else { throw .tooManyNames(names.count, lineCount) }
        var seen = Set<String>()
        for name in names where !name.isEmpty {
            guard seen.insert(name).inserted else { throw .duplicateName(name) }
            guard !name.utf8.contains(0), name.utf8.count < 256 else { throw .badName(name) }
        }
        var wired = Set<Int>()
        for (a, b) in loopbacks {
            for line in [a, b] {
                guard line >= 0, line < lineCount else { throw .noSuchLine(line) }
                guard wired.insert(line).inserted else { throw .wiredTwice(line) }
            }
            guard a != b else { throw .wiredTwice(a) }
        }
        for line in busy where line < 0 || line >= lineCount { throw .noSuchLine(line) }
        self.lineCount = lineCount
        self.names = names + [String](repeating: "", count: lineCount - names.count)
        self.loopbackPairs = loopbacks.map { Pair(a: $0.0, b: $0.1) }
        self.busy = busy
    }

    /// Parses `A-B` loopback pairs, e.g. `0-1`.
    public static func parsePair(_ text: String) throws(LayoutError) -> (Int, Int) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]) else { throw .badPair(text) }
        return (a, b)
    }

    /// The line wired to `line`, if any.
    func partner(of line: Int) -> Int? {
        for pair in loopbackPairs {
            if pair.a == line { return pair.b }
            if pair.b == line { return pair.a }
        }
        return nil
    }

    public static func == (l: Self, r: Self) -> Bool {
        l.lineCount == r.lineCount && l.names == r.names && l.loopbackPairs == r.loopbackPairs && l.busy == r.busy
    }
}

/// Why a simulated chip's layout is refused.
public enum LayoutError: Error, Equatable, CustomStringConvertible {
    case lineCount(Int)
    case tooManyNames(Int, Int)
    case duplicateName(String)
    case badName(String)
    case noSuchLine(Int)
    case wiredTwice(Int)
    case badPair(String)

    public var description: String {
        switch self {
        case let .lineCount(n): "a chip has 1 to \(SimulatedChipLayout.maxLines) lines, not \(n)"
        case let .tooManyNames(n, lines): "\(n) names for \(lines) lines"
        case let .duplicateName(name): "line name \"\(name)\" is given twice (names must be unique)"
        case let .badName(name): "line name \"\(name)\" is too long or contains a NUL"
        case let .noSuchLine(line): "line \(line) does not exist"
        case let .wiredTwice(line): "line \(line) is in more than one loopback pair"
        case let .badPair(text): "loopback pair \"\(text)\" is not LINE-LINE (e.g. 0-1)"
        }
    }
}
