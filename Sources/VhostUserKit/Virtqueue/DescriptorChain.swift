/// One available request: its head index and its buffers as host memory, readable ones first.
/// The views point into guest memory and into the queue's scratch space; they are valid until the
/// queue's next `nextChain()` call or until the queue stops.
public struct DescriptorChain {
    /// The head descriptor index: what the used ring entry names.
    public let head: UInt16
    /// Buffers the device reads (driver to device).
    public let readable: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>
    /// Buffers the device writes (device to driver).
    public let writable: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>
    public let readableLength: Int
    public let writableLength: Int

    /// A cursor over the readable bytes.
    public func reader() -> ChainReader { ChainReader(readable) }
    /// A cursor over the writable bytes.
    public func writer() -> ChainWriter { ChainWriter(writable) }
}

/// Reads bytes sequentially across a chain's readable buffers (a header may be split across several).
public struct ChainReader {
    private let segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>
    private var segment = 0
    private var offset = 0
    public private(set) var consumed = 0

    init(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>) { self.segments = segments }

    /// Copies up to `destination.count` bytes; returns how many were available.
    @discardableResult
    public mutating func read(into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        while copied < destination.count && segment < segments.count {
            let s = segments[segment]
            let n = min(destination.count - copied, s.count - offset)
            if n > 0 {
                (destination.baseAddress! + copied).copyMemory(from: s.baseAddress! + offset, byteCount: n)
            }
            copied += n
            offset += n
            if offset == s.count { segment += 1; offset = 0 }
        }
        consumed += copied
        return copied
    }

    /// Reads a little-endian integer, or nil when fewer bytes remain.
    public mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        var value = T.zero
        let n = withUnsafeMutableBytes(of: &value) { read(into: $0) }
        return n == MemoryLayout<T>.size ? T(littleEndian: value) : nil
    }
}

/// Writes bytes sequentially across a chain's writable buffers.
public struct ChainWriter {
    private let segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>
    private var segment = 0
    private var offset = 0
    /// Bytes written so far: the length to report when completing the chain.
    public private(set) var written = 0

    init(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>) { self.segments = segments }

    /// Copies up to `source.count` bytes; returns how many fit.
    @discardableResult
    public mutating func write(_ source: UnsafeRawBufferPointer) -> Int {
        var copied = 0
        while copied < source.count && segment < segments.count {
            let s = segments[segment]
            let n = min(source.count - copied, s.count - offset)
            if n > 0 {
                (s.baseAddress! + offset).copyMemory(from: source.baseAddress! + copied, byteCount: n)
            }
            copied += n
            offset += n
            if offset == s.count { segment += 1; offset = 0 }
        }
        written += copied
        return copied
    }

    /// Writes a little-endian integer; returns whether it fit whole.
    @discardableResult
    public mutating func write<T: FixedWidthInteger>(_ value: T) -> Bool {
        withUnsafeBytes(of: value.littleEndian) { write($0) } == MemoryLayout<T>.size
    }

    /// Hands the next writable pieces (up to `limit` bytes in all) to `fill`, which returns how many bytes
    /// it produced into each; stops early when `fill` produces less than offered. For sources such as
    /// read(2) that write straight into guest memory without a bounce buffer.
    public mutating func fill(upTo limit: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        var produced = 0
        while produced < limit && segment < segments.count {
            let s = segments[segment]
            let n = min(limit - produced, s.count - offset)
            if n == 0 { segment += 1; offset = 0; continue }
            let got = max(0, min(n, fill(UnsafeMutableRawBufferPointer(start: s.baseAddress! + offset, count: n))))
            produced += got
            offset += got
            if offset == s.count { segment += 1; offset = 0 }
            if got < n { break }
        }
        written += produced
        return produced
    }
}
