#if canImport(Glibc)
import Glibc
#endif

/// Puts a terminal in raw mode for as long as the daemon runs and gives it back as it was on every
/// way out: a normal exit or exit(3) (atexit), and the fatal signals a terminal user sends or the
/// process may raise (SIGHUP, SIGQUIT, SIGABRT, SIGSEGV: restored, then the signal's default action).
/// SIGTERM and SIGINT end the daemon through exit(3). Only SIGKILL leaves the terminal raw.
enum TerminalMode {
    /// A descriptor's saved terminal attributes and file status flags.
    private struct Saved {
        var fd: Int32
        var attributes: termios?
        var flags: Int32
    }
    /// Written before any handler is installed, read by the handlers (a fixed-size table, no
    /// allocation in a signal handler).
    nonisolated(unsafe) private static var saved: [Saved] = { var a = [Saved](); a.reserveCapacity(4); return a }()
    nonisolated(unsafe) private static var installed = false

    private static let fatalSignals = [SIGHUP, SIGQUIT, SIGABRT, SIGSEGV]

    /// Makes `fd` non-blocking and, when `raw` and it is a terminal, raw; remembers how to undo both.
    /// Returns whether the terminal went raw.
    @discardableResult
    static func take(_ fd: Int32, raw: Bool) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        var entry = Saved(fd: fd, attributes: nil, flags: flags)
        var madeRaw = false
        if raw, isatty(fd) == 1 {
            var attributes = termios()
            if tcgetattr(fd, &attributes) == 0 {
                entry.attributes = attributes
                var rawAttributes = attributes
                cfmakeraw(&rawAttributes)
                madeRaw = tcsetattr(fd, TCSANOW, &rawAttributes) == 0
            }
        }
        saved.append(entry)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        installHandlers()
        return madeRaw
    }

    /// Gives every taken descriptor its attributes and flags back (async-signal-safe), newest first:
    /// descriptors sharing one open file (stdin and stdout on one terminal) end with the first state.
    static func restore() {
        for i in saved.indices.reversed() {
            if var attributes = saved[i].attributes { _ = tcsetattr(saved[i].fd, TCSANOW, &attributes) }
            if saved[i].flags >= 0 { _ = fcntl(saved[i].fd, F_SETFL, saved[i].flags) }
        }
    }

    private static func installHandlers() {
        guard !installed else { return }
        installed = true
        atexit { TerminalMode.restore() }
        for signal in fatalSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                TerminalMode.restore()
                Glibc.signal(number, SIG_DFL)
                raise(number)
            }
            action.sa_flags = Int32(bitPattern: UInt32(truncatingIfNeeded: SA_RESETHAND))
            sigaction(signal, &action, nil)
        }
    }
}
