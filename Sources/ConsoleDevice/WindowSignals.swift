import CConsole
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// SIGWINCH as a descriptor (signalfd): the terminal the daemon runs in changed its size. The signal
/// is blocked in the calling thread, so make it before any other thread starts (the daemon's
/// `makeDevice`), and every thread inherits the mask; the signal then waits for the descriptor.
final class WindowSignals {
    let descriptor: OwnedDescriptor

    private init(descriptor: OwnedDescriptor) { self.descriptor = descriptor }

    static func make() -> WindowSignals? {
        let fd = vhu_console_window_signals()
        return fd >= 0 ? WindowSignals(descriptor: OwnedDescriptor(fd)) : nil
    }

    /// Reads every pending SIGWINCH; returns whether there was one.
    func drain() -> Bool { vhu_console_drain_signals(descriptor.rawValue) > 0 }
}
