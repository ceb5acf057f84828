/// The simulated chip's control protocol: one command per line of text on the control socket, one
/// reply line for each.
///
///     set LINE 0|1     drive the line's input level (an input sees it, an interrupt may fire)  -> ok
///     get LINE         the line's level as the driver sees it                                  -> 0 | 1
///     direction LINE   what the driver configured                                               -> in | out | none
///
/// LINE is a line number or a line name. A refused command gets `error: ...`.
public enum ControlCommand: Equatable, Sendable {
    case set(LineReference, Bool)
    case get(LineReference)
    case direction(LineReference)

    /// A line by number or by name.
    public enum LineReference: Equatable, Sendable {
        case number(Int)
        case name(String)
    }

    /// The longest command line accepted; a longer one closes the connection.
    public static let maxLineBytes = 256

    /// Parses one command line (without its newline).
    public static func parse(_ text: Substring) throws(ControlCommandError) -> ControlCommand {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard let verb = words.first else { throw .empty }
        func line(_ word: Substring) -> LineReference { Int(word).map(LineReference.number) ?? .name(String(word)) }
        switch (verb, words.count) {
        case ("set", 3):
            switch words[2] {
            case "0": return .set(line(words[1]), false)
            case "1": return .set(line(words[1]), true)
            default: throw .badLevel(String(words[2]))
            }
        case ("get", 2): return .get(line(words[1]))
        case ("direction", 2): return .direction(line(words[1]))
        case ("set", _), ("get", _), ("direction", _): throw .usage(String(verb))
        default: throw .unknown(String(verb))
        }
    }
}

/// Why a control command was refused.
public enum ControlCommandError: Error, Equatable, CustomStringConvertible {
    case empty
    case unknown(String)
    case usage(String)
    case badLevel(String)
    case noSuchLine(String)
    case lineBusy(Int)

    public var description: String {
        switch self {
        case .empty: "empty command"
        case let .unknown(verb): "unknown command \"\(verb)\" (set, get, direction)"
        case let .usage(verb): verb == "set" ? "usage: set LINE 0|1" : "usage: \(verb) LINE"
        case let .badLevel(level): "level \"\(level)\" is not 0 or 1"
        case let .noSuchLine(line): "no line \"\(line)\""
        case let .lineBusy(line): "line \(line) is in use on the host"
        }
    }
}
