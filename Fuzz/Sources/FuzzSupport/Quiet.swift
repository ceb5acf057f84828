#if canImport(Glibc)
import Glibc
#endif
import Logging

/// A logger that drops everything: the kit logs every refused request, which would drown the fuzzer's
/// output and cost more than the code under test. FUZZ_LOG=1 shows the messages when debugging a crash.
public let quietLogger: Logger = {
    var logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }
    if getenv("FUZZ_LOG") != nil {
        logger = Logger(label: "fuzz") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .trace
    }
    return logger
}()
