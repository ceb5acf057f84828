/// What one daemon's soak did and found.
struct SoakStats {
    var connections = 0
    /// How connections ended.
    var endings: [ConnectionEnding: Int] = [:]
    var requestsSubmitted = 0
    var requestsCompleted = 0
    /// Requests in flight when a connection dropped (or the daemon was killed).
    var inFlightAtDrops = 0
    /// Of those, completed by the daemon after the drop (in the old connection or the next).
    var completedAfterDrop = 0
    /// Requests the restarted daemon resubmitted from the inflight region (each checked exactly).
    var resubmitted = 0
    /// Requests in flight on rings the soak gave up: they may or may not have been carried out.
    var abandoned = 0
    /// Requests that never completed on a running queue.
    var lost = 0
    var daemonRestarts = 0
    /// Daemon lines at error level explained by a drop (a reply to a front-end that had gone).
    var explainedErrorLines = 0
    private(set) var violations: [String] = []

    mutating func violation(_ what: String) { violations.append(what) }
}

/// Where a connection ends.
enum ConnectionEnding: String, CaseIterable {
    /// Closed part-way through the set-up messages.
    case midSetUp = "mid set-up"
    /// Closed with every request completed.
    case betweenRequests = "between requests"
    /// Closed right after kicking requests, without waiting for them.
    case midRequest = "mid request"
    /// GET_VRING_BASE on every ring (with or without requests in flight), then closed.
    case properStop = "GET_VRING_BASE"
    /// A request sent and the connection closed before its reply.
    case unreadReply = "unread reply"
    /// The daemon killed (SIGKILL) with requests in flight and started again.
    case daemonKilled = "daemon killed"
}
