import Testing
import VhostUserTesting

/// How a test tells that a sanitized daemon found a bug: the report it printed in its output.
@Suite("sanitizer reports in a daemon's output")
struct SanitizerReportTests {
    static let daemonLog = """
        info vhost-user-blk: listening on /tmp/dt-x/blk.sock
        warning vhost-user-blk: queue 0: io_uring is unavailable; using the thread-pool engine
        error vhost-user-blk: cannot send the config change: the front-end closed the socket
        """

    @Test("reports of each sanitizer are found, from their first line", arguments: [
        ("==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000011", "    #0 0x55 in f"),
        ("==4242==ERROR: LeakSanitizer: detected memory leaks", "Direct leak of 32 byte(s) in 1 object(s) allocated from:"),
        ("WARNING: ThreadSanitizer: data race (pid=4242)", "  Write of size 8 at 0x7b04 by thread T1:"),
        ("WARNING: ThreadSanitizer: Swift access race (pid=4242)", "  Modifying access of Swift variable at 0x72"),
    ])
    func found(first: String, second: String) {
        let log = Self.daemonLog + "\n==================\n" + first + "\n" + second + "\n"
        let report = sanitizerReport(in: log)
        #expect(report != nil)
        #expect(report?.hasPrefix(first) == true)
        #expect(report?.contains(second) == true)
        #expect(report?.contains("listening on") == false)
    }

    @Test("a daemon's own errors and warnings are not sanitizer reports")
    func ordinaryLog() {
        #expect(sanitizerReport(in: Self.daemonLog) == nil)
        #expect(sanitizerReport(in: "") == nil)
        #expect(sanitizerReport(in: "error vhost-user-rng: ERROR: Sanitizers are not a word here") == nil)
    }
}
