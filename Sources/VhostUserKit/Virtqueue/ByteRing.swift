#if canImport(Glibc)
import Glibc
#endif

/// A byte FIFO of fixed capacity, allocated once: a device's bytes on their way between a host
/// descriptor and the guest (a console port's, a vsock connection's). Reads and writes go straight between the ring and descriptors or
/// descriptor chains, with no copy in between and no allocation.
public struct ByteRing: ~Copyable {
    private var storage: UnsafeMutableRawBufferPointer
    private var head = 0
    public private(set) var count = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    public var capacity: Int { storage.count }
    public var free: Int { storage.count - count }
    public var isEmpty: Bool { count == 0 }

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
    public mutating func consume(_ n: Int) {
        precondition(n <= count)
        count -= n
        head = count == 0 ? 0 : (head + n) % storage.count
    }

    /// Appends as much of `bytes` as fits; returns how much did.
    @discardableResult
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> Int {
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

    /// Appends the unread bytes of a chain (at most `limit`), as many as fit; returns how many.
    public mutating func append(from reader: inout ChainReader, upTo limit: Int = .max) -> Int {
        var done = 0
        while free > 0, done < limit {
            let space = writable
            let n = reader.read(into: UnsafeMutableRawBufferPointer(rebasing: space[0..<min(space.count, limit - done)]))
            if n == 0 { break }
            count += n
            done += n
        }
        return done
    }

    /// Moves the oldest bytes (at most `limit`) into a chain's writable buffers, as many as fit; returns how many.
    public mutating func drain(into writer: inout ChainWriter, upTo limit: Int = .max) -> Int {
        var done = 0
        while count > 0, done < limit {
            let run = readable
            let n = writer.write(UnsafeRawBufferPointer(rebasing: run[0..<min(run.count, limit - done)]))
            if n == 0 { break }
            consume(n)
            done += n
        }
        return done
    }

    /// Lets `fill` write into the free space after the newest byte (one contiguous run; all of it when
    /// the ring is empty) and keeps the bytes it says it produced.
    public mutating func withFreeSpace(_ fill: (UnsafeMutableRawBufferPointer) -> Int) {
        let space = writable
        count += max(0, min(space.count, fill(space)))
    }

    /// Reads from `fd` into the free space (one read(2)); returns its result (-1 with errno set).
    public mutating func read(from fd: Int32) -> Int {
        let space = writable
        guard space.count > 0 else { return 0 }
        let n = Glibc.read(fd, space.baseAddress, space.count)
        if n > 0 { count += n }
        return n
    }

    /// Writes the oldest bytes to `fd` (send(2) without SIGPIPE for a socket); returns the result of
    /// the last call (-1 with errno set), having written until the ring is empty or the call would block.
    public mutating func write(to fd: Int32, socket: Bool) -> Int {
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

    /// Sends the oldest `length` bytes as one message (one sendmsg(2) without SIGPIPE: a SOCK_SEQPACKET
    /// record, the ring's two runs gathered) and consumes them when it succeeds; returns its result.
    public mutating func sendRecord(_ length: Int, to fd: Int32) -> Int {
        precondition(length <= count)
        let first = min(length, storage.count - head)
        var vectors = (iovec(iov_base: storage.baseAddress! + head, iov_len: first),
                       iovec(iov_base: storage.baseAddress!, iov_len: length - first))
        let sent = withUnsafeMutableBytes(of: &vectors) { raw -> Int in
            var message = msghdr()
            message.msg_iov = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            message.msg_iovlen = length > first ? 2 : 1
            return sendmsg(fd, &message, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        }
        if sent > 0 { consume(sent) }
        return sent
    }

    /// Grows the ring to at least `capacity` bytes, keeping its contents (rare: a chain larger than the
    /// room the ring keeps for one).
    public mutating func grow(to capacity: Int) {
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
    public var contents: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        let first = readable
        bytes += first
        if first.count < count { bytes += UnsafeRawBufferPointer(rebasing: storage[0..<(count - first.count)]) }
        return bytes
    }

    /// Replaces what the ring holds with `bytes` (at most `capacity` of them).
    public mutating func replace(with bytes: [UInt8]) {
        precondition(bytes.count <= capacity)
        head = 0
        count = 0
        bytes.withUnsafeBytes { _ = append($0) }
    }
}
