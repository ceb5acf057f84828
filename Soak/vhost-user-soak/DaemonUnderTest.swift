import Synchronization
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// One daemon executable run as a child process for the soak: its stderr is copied to a log file and
/// read line by line, so the soak can wait for the daemon to report a front-end gone and can collect
/// every line at error level. Can be killed and started again on the same socket (one incarnation
/// after another).
final class DaemonUnderTest: @unchecked Sendable {
    let command: [String]
    let socketPath: String
    let logPath: String
    private(set) var pid: pid_t = 0
    /// How many times the process was started.
    private(set) var incarnations = 0
    private let log: LogWatch
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments` plus `--socket-path SOCKET` and waits until it listens.
    init(executable: String, arguments: [String], socketPath: String, logPath: String) throws {
        command = [executable, "--socket-path", socketPath] + arguments
        self.socketPath = socketPath
        self.logPath = logPath
        log = try LogWatch(path: logPath)
        try start()
    }

    /// Starts a (new) process and waits for its "listening on" line.
    func start() throws {
        unlink(socketPath)
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SoakError("\(SystemError("socketpair", errno: errno))")
        }
        defer { close(fds[1]) }
        log.beginIncarnation()
        do {
            pid = try spawnInOwnGroup(command) { actions in
                posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
                posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
            }
        } catch {
            close(fds[0])
            throw SoakError("\(error)")
        }
        incarnations += 1
        exitStatus = nil
        log.follow(fds[0])
        guard log.waitForLine(containing: "listening on", count: 1, timeoutMilliseconds: 20_000) else {
            throw SoakError("\(command[0]) did not start listening within 20 s; exit status \(exited().map(String.init) ?? "none")")
        }
    }

    /// The exit status (128 + signal when killed) once the process has ended, else nil. Reaps it.
    func exited() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { exitStatus = exitCode(fromWaitStatus: status) }
        return exitStatus
    }

    /// Sends `signal` and waits (up to `timeoutMilliseconds`) for the process to end; returns its status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeoutMilliseconds: Int = 10_000) -> Int32? {
        if exited() == nil { kill(pid, signal) }
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while exited() == nil && monotonicMilliseconds() < deadline { _ = log.waitForChange(timeoutMilliseconds: 20) }
        if exited() == nil {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            exitStatus = exitCode(fromWaitStatus: status)
            return nil
        }
        log.waitForEnd(timeoutMilliseconds: 2000)
        return exitStatus
    }

    /// Waits until this incarnation has reported `count` front-ends gone (a clean disconnect or a
    /// dropped one): the session is closed, its queues stopped and their requests finished.
    func waitForDisconnects(_ count: Int, timeoutMilliseconds: Int) -> Bool {
        log.waitForLine(containing: "front-end disconnected", or: "dropping the front-end", count: count,
                        timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Lines of this incarnation's log containing `text`.
    func lines(containing text: String) -> [String] { log.lines(containing: text) }

    /// Every line at error level or above since the daemon first started.
    var errorLines: [String] { log.errorLines }
}

/// Follows a daemon's stderr on a thread of its own: appends each line to a file, keeps the current
/// incarnation's lines for searching, and signals an eventfd on every line so waiters need no sleeps.
final class LogWatch: @unchecked Sendable {
    private struct State {
        var lines: [String] = []
        var errorLines: [String] = []
        var open = false
    }
    private let state = Mutex(State())
    private let changed: EventFD
    private let file: Int32
    private var reader: PosixThread?

    init(path: String) throws {
        changed = try EventFD()
        file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard file >= 0 else { throw SoakError("cannot create \(path): \(SystemError.describe(errno))") }
    }

    deinit {
        reader?.join()
        close(file)
    }

    func beginIncarnation() {
        reader?.join()
        reader = nil
        state.withLock { $0.lines.removeAll(); $0.open = true }
    }

    /// Reads `descriptor` (closing it at end of file) until the writer closes it.
    func follow(_ descriptor: Int32) {
        reader = PosixThread { [self] in
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(descriptor, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                _ = chunk.withUnsafeBytes { write(file, $0.baseAddress!, n) }
                pending.append(contentsOf: chunk[..<n])
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    state.withLock {
                        $0.lines.append(line)
                        if line.hasPrefix("error ") || line.hasPrefix("critical ") { $0.errorLines.append(line) }
                    }
                    changed.signal()
                }
            }
            close(descriptor)
            state.withLock { $0.open = false }
            changed.signal()
        }
    }

    /// Waits for any new line or the end of the stream.
    func waitForChange(timeoutMilliseconds: Int32) -> Bool { changed.wait(timeoutMilliseconds: timeoutMilliseconds) }

    func waitForEnd(timeoutMilliseconds: Int) {
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while state.withLock({ $0.open }) && monotonicMilliseconds() < deadline { _ = waitForChange(timeoutMilliseconds: 50) }
    }

    /// Waits until `count` lines of this incarnation contain `text` (or `other`).
    func waitForLine(containing text: String, or other: String? = nil, count: Int, timeoutMilliseconds: Int) -> Bool {
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while true {
            let (found, open) = state.withLock { s in
                (s.lines.count { $0.contains(text) || (other.map($0.contains) ?? false) }, s.open)
            }
            if found >= count { return true }
            let left = deadline - monotonicMilliseconds()
            if left <= 0 || !open { return false }
            _ = waitForChange(timeoutMilliseconds: Int32(min(left, 1000)))
        }
    }

    func lines(containing text: String) -> [String] { state.withLock { $0.lines.filter { $0.contains(text) } } }
    var errorLines: [String] { state.withLock { $0.errorLines } }
}

func monotonicMilliseconds() -> Int { Int(monotonicNanoseconds() / 1_000_000) }

/// A failure of the soak itself (not of a daemon): bad options, a file that cannot be made.
struct SoakError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
