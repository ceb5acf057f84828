/// The first sanitizer report in a process's output, from its first line on (at most 80 lines), or nil
/// when there is none. A daemon built with `--sanitize=address` or `--sanitize=thread` prints a report
/// on stderr (an ASan error, a LeakSanitizer leak list at exit, a TSan race) and goes on or exits with
/// the sanitizer's exit code; the test that ran it fails on the report, whatever its exit status.
public func sanitizerReport(in output: String) -> String? {
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
    guard let first = lines.firstIndex(where: isSanitizerReportLine) else { return nil }
    return lines[first...].prefix(80).joined(separator: "\n")
}

/// `==PID==ERROR: AddressSanitizer: ...`, `==PID==ERROR: LeakSanitizer: ...`,
/// `WARNING: ThreadSanitizer: ...`, `SUMMARY: AddressSanitizer: ...` and the like.
private func isSanitizerReportLine(_ line: Substring) -> Bool {
    ["ERROR: ", "WARNING: ", "SUMMARY: "].contains { prefix in
        var rest = line[...]
        while let range = rest.firstRange(of: prefix) {
            let word = rest[range.upperBound...].prefix { $0.isLetter }
            if word.hasSuffix("Sanitizer") { return true }
            rest = rest[range.upperBound...]
        }
        return false
    }
}
