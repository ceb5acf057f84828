import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A value behind a lock: Synchronization's `Mutex`, whose critical sections ThreadSanitizer can see.
///
/// On Linux, `Mutex` takes and releases a contended lock in `_lockSlow`/`_unlockSlow`, futex code in
/// the Synchronization library, which is not built with ThreadSanitizer. A TSan build (`swift test
/// --sanitize=thread`) then sees no ordering between one thread's critical section and the next
/// thread's and reports a race on the protected value whenever two threads meet at the lock. `Locked`
/// tells TSan about each hand-over (an acquire when a critical section starts, a release when it
/// ends), so it reports only real races. Without TSan that costs a load and a not-taken branch.
public final class Locked<Value: ~Copyable>: Sendable {
    @usableFromInline let mutex: Mutex<Value>

    public init(_ value: consuming sending Value) { mutex = Mutex(value) }

    /// Runs `body` with exclusive access to the value.
    @inlinable
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            let hooks = ThreadSanitizerHooks.inThisProcess
            let token = Unmanaged.passUnretained(self).toOpaque()
            hooks?.acquire(token)
            defer { hooks?.release(token) }
            return try body(&value)
        }
    }
}

/// ThreadSanitizer's `__tsan_acquire` and `__tsan_release`, looked up at run time: the TSan runtime is
/// linked into executables built with `-sanitize=thread` and absent from every other build.
@usableFromInline
struct ThreadSanitizerHooks: Sendable {
    @usableFromInline typealias Hook = @convention(c) (UnsafeMutableRawPointer?) -> Void
    @usableFromInline let acquire: Hook
    @usableFromInline let release: Hook

    /// Nil unless this process runs under ThreadSanitizer.
    @usableFromInline static let inThisProcess: ThreadSanitizerHooks? = {
        guard let acquire = dlsym(nil, "__tsan_acquire"), let release = dlsym(nil, "__tsan_release") else { return nil }
        return ThreadSanitizerHooks(acquire: unsafeBitCast(acquire, to: Hook.self), release: unsafeBitCast(release, to: Hook.self))
    }()
}
