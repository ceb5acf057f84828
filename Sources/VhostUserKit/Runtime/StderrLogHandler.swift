import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes one line per message to stderr: `<level> <label>: <message>`.
/// When stderr is the systemd journal (JOURNAL_STREAM), lines start with a syslog priority prefix
/// (`<3>` for errors...) so `journalctl -p` filters them.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let journalPrefix: Bool

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
        self.journalPrefix = getenv("JOURNAL_STREAM") != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let prefix = journalPrefix ? "<\(Self.syslogPriority(event.level))>" : "\(event.level) "
        let line = "\(prefix)\(label): \(event.message)\n"
        line.utf8CString.withUnsafeBufferPointer { buffer in
            _ = write(2, buffer.baseAddress!, buffer.count - 1)
        }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
