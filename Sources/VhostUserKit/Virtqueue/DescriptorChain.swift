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

/// A position in a list of buffers that steps across buffer boundaries.
struct SegmentCursor {
    private let segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>
    private var segment = 0
    private var offset = 0

    init(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>) { self.segments = segments }

    /// The next contiguous piece of at most `limit` bytes, now consumed; nil at the end.
    @inline(__always)
    mutating func next(upTo limit: Int) -> UnsafeMutableRawBufferPointer? {
        while segment < segments.count && offset == segments[segment].count {
            segment += 1
            offset = 0
        }
        guard limit > 0, segment < segments.count else { return nil }
        let s = segments[segment]
        let n = min(limit, s.count - offset)
        defer { offset += n }
        return UnsafeMutableRawBufferPointer(start: s.baseAddress! + offset, count: n)
    }

    /// Gives back the last `count` bytes of the piece `next` just returned.
    @inline(__always)
    mutating func unconsume(_ count: Int) { offset -= count }
}

/// Reads bytes sequentially across a chain's readable buffers (a header may be split across several).
public struct ChainReader {
    private var cursor: SegmentCursor
    public private(set) var consumed = 0

    init(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>) { cursor = SegmentCursor(segments) }

    /// Copies up to `destination.count` bytes; returns how many were available.
    @discardableResult
    public mutating func read(into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        while let piece = cursor.next(upTo: destination.count - copied) {
            (destination.baseAddress! + copied).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
            copied += piece.count
        }
        consumed += copied
        return copied
    }

    /// Hands the next readable pieces (up to `limit` bytes in all) to `drain`, which returns how many
    /// bytes of each it took; stops early when it takes less than offered. For sinks such as send(2)
    /// that take guest memory straight, without a bounce buffer (the mirror of `ChainWriter.fill`).
    public mutating func drain(upTo limit: Int, _ drain: (UnsafeRawBufferPointer) -> Int) -> Int {
        var taken = 0
        while let piece = cursor.next(upTo: limit - taken) {
            let got = max(0, min(piece.count, drain(UnsafeRawBufferPointer(piece))))
            taken += got
            if got < piece.count {
                cursor.unconsume(piece.count - got)
                break
            }
        }
        consumed += taken
        return taken
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
    private var cursor: SegmentCursor
    /// Bytes written so far: the length to report when completing the chain.
    public private(set) var written = 0

    init(_ segments: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>) { cursor = SegmentCursor(segments) }

    /// Copies up to `source.count` bytes; returns how many fit.
    @discardableResult
    public mutating func write(_ source: UnsafeRawBufferPointer) -> Int {
        var copied = 0
        while let piece = cursor.next(upTo: source.count - copied) {
            piece.baseAddress!.copyMemory(from: source.baseAddress! + copied, byteCount: piece.count)
            copied += piece.count
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
        while let piece = cursor.next(upTo: limit - produced) {
            let got = max(0, min(piece.count, fill(piece)))
            produced += got
            if got < piece.count {
                cursor.unconsume(piece.count - got)
                break
            }
        }
        written += produced
        return produced
    }
}
