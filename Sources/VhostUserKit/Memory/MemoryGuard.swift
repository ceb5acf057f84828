import CVhostUser

/// Keeps a mapping of front-end memory from crashing the daemon when the front-end shrinks the file
/// behind it: a SIGBUS inside a guarded mapping is absorbed (the lost page reads as zeroes, writes go
/// nowhere) and recorded, and the owner of the mapping sees `faulted` and stops trusting it.
struct MemoryGuard {
    private let slot: Int32

    /// Guards `length` bytes at `base` until `release()`, which must come before the unmapping. The
    /// process-wide table has 256 slots; a connection needs at most 32 regions and one inflight region.
    init(base: UnsafeMutableRawPointer, length: Int) {
        slot = vhu_guard_register(base, length)
    }

    func release() { vhu_guard_unregister(slot) }

    /// Whether an access to the mapping faulted because its file no longer backs it.
    var faulted: Bool { vhu_guard_faulted(slot) != 0 }

    /// Installs the process's SIGBUS handler now rather than at the first mapping (before a sandbox
    /// that forbids sigaction, for instance).
    static func install() { _ = vhu_guard_install() }

    /// Guarded faults taken by the process so far: a cheap value to compare after each pass.
    static var faultCount: UInt64 { vhu_guard_fault_count() }
}
