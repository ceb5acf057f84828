import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// A byte FIFO of fixed capacity, allocated once: a port's bytes on their way between a host
/// descriptor and the guest. Reads and writes go straight between the ring and descriptors or
/// descriptor chains, with no copy in between and no allocation.
struct ByteRing: ~Copyable {
    private var storage: UnsafeMutableRawBufferPointer
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    var capacity: Int { storage.count }
    var free: Int { storage.count - count }
    var isEmpty: Bool { count == 0 }

    /// The oldest bytes, as one contiguous run (the rest follows after `consume`).
    private var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[head..<min(storage.count, head + count)])
    }
    /// Free space after the newest byte, as one contiguous run.
    private var writable: UnsafeMutableRawBufferPointer {
        guard count < storage.count else { return UnsafeMutableRawBufferPointer(rebasing: storage[0..<0]) }
        let tail = (head + count) % storage.count
        return UnsafeMutableRawBufferPointer(rebasing: storage[tail..<(tail < head ? head : storage.count)])
    }

    /// Forgets the oldest `n` bytes.
    mutating func consume(_ n: Int) {
        precondition(n <= count)
        count -= n
        head = count == 0 ? 0 : (head + n) % storage.count
    }

    /// Appends as much of `bytes` as fits; returns how much did.
    @discardableResult
    mutating func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        var done = 0
        while done < bytes.count, free > 0 {
            let space = writable
            let n = min(space.count, bytes.count - done)
            space.baseAddress!.copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            count += n
            done += n
        }
        return done
    }

    /// Appends the unread bytes of a chain, as many as fit; returns how many.
    mutating func append(from reader: inout ChainReader) -> Int {
        var done = 0
        while free > 0 {
            let n = reader.read(into: writable)
            if n == 0 { break }
            count += n
            done += n
        }
        return done
    }

    /// Moves the oldest bytes into a chain's writable buffers, as many as fit; returns how many.
    mutating func drain(into writer: inout ChainWriter) -> Int {
        var done = 0
        while count > 0 {
            let n = writer.write(readable)
            if n == 0 { break }
            consume(n)
            done += n
        }
        return done
    }

    /// Reads from `fd` into the free space (one read(2)); returns its result (-1 with errno set).
    mutating func read(from fd: Int32) -> Int {
        let space = writable
        guard space.count > 0 else { return 0 }
        let n = Glibc.read(fd, space.baseAddress, space.count)
        if n > 0 { count += n }
        return n
    }

    /// Writes the oldest bytes to `fd` (send(2) without SIGPIPE for a socket); returns the result of
    /// the last call (-1 with errno set), having written until the ring is empty or the call would block.
    mutating func write(to fd: Int32, socket: Bool) -> Int {
        var last = 0
        while count > 0 {
            let run = readable
            last = socket ? send(fd, run.baseAddress, run.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                          : Glibc.write(fd, run.baseAddress, run.count)
            if last <= 0 { return last }
            consume(last)
        }
        return last
    }

    /// Grows the ring to at least `capacity` bytes, keeping its contents (rare: a chain larger than the
    /// room the ring keeps for one).
    mutating func grow(to capacity: Int) {
        guard capacity > storage.count else { return }
        let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        var copied = 0
        while count > 0 {
            let run = readable
            (bigger.baseAddress! + copied).copyMemory(from: run.baseAddress!, byteCount: run.count)
            copied += run.count
            consume(run.count)
        }
        storage.deallocate()
        storage = bigger
        head = 0
        count = copied
    }

    /// The bytes held, oldest first (a copy; for the device's migration state).
    var contents: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        let first = readable
        bytes += first
        if first.count < count { bytes += UnsafeRawBufferPointer(rebasing: storage[0..<(count - first.count)]) }
        return bytes
    }

    /// Replaces what the ring holds with `bytes` (at most `capacity` of them).
    mutating func replace(with bytes: [UInt8]) {
        precondition(bytes.count <= capacity)
        head = 0
        count = 0
        bytes.withUnsafeBytes { _ = append($0) }
    }
}
