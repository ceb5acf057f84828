import CRBD
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// One queue's requests on an RBD image: rbd_aio_readv/writev straight between guest memory and
/// librbd, flush, discard and write zeroes; librbd's callback (on its own thread) leaves each result in
/// the inbox that wakes the queue worker. Many requests are in flight at once. Reads and writes wait
/// for `submit()`, which starts each run of adjacent ones as one operation.
final class RBDEngine: InboxEngine, IOEngine {
    private let store: RBDStore
    private let image: rbd_image_t
    private let contexts: UnsafeMutablePointer<CallbackContext>
    private let depth: Int
    private var queued: AdjacentRuns
    /// Per tag: the merged operation that tag's request leads (its iovecs and member tags), made the
    /// first time the tag leads one.
    private let merged: UnsafeMutablePointer<UnsafeMutablePointer<MergedOperation>?>

    init(store: RBDStore, image: rbd_image_t, depth: Int) throws(SystemError) {
        self.store = store
        self.image = image
        self.depth = depth
        contexts = .allocate(capacity: depth)
        queued = AdjacentRuns(capacity: depth)
        merged = .allocate(capacity: depth)
        merged.initialize(repeating: nil, count: depth)
        super.init(depth: depth, inbox: try CompletionInbox())
        for i in 0..<depth { (contexts + i).initialize(to: CallbackContext(inbox: .passUnretained(inbox), tag: UInt16(i))) }
    }

    deinit {
        contexts.deallocate()
        queued.deallocate()
        for i in 0..<depth {
            guard let operation = merged[i] else { continue }
            operation.pointee.tags.deallocate()
            operation.pointee.iov.deallocate()
            operation.deallocate()
        }
        merged.deallocate()
    }

    /// librbd's threads belong to the store and nothing is in flight any more: only the store's
    /// lock hand-over hears of it.
    func shutdown() { store.engineStopped() }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        let length = Self.length(iov, count: count)
        guard begin(tag, parts: 1, expected: length) else { return false }
        return queued.append(.init(iov: iov, count: count, offset: offset, length: Int(length), tag: tag, isWrite: false))
    }

    /// With `sync` (the guest's write cache off) a flush follows the write: librbd's flush waits for
    /// the writes issued before it and takes them out of its cache to the OSDs.
    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        let length = Self.length(iov, count: count)
        guard begin(tag, parts: sync ? 2 : 1, expected: length) else { return false }
        guard sync else {
            return queued.append(.init(iov: iov, count: count, offset: offset, length: Int(length), tag: tag, isWrite: true))
        }
        submit()
        start(tag) { rbd_aio_writev(image, iov, Int32(count), offset, $0) }
        start(tag) { rbd_aio_flush(image, $0) }
        return true
    }

    /// A flush covers the writes queued before it: they start first.
    func flush(fd: Int32, tag: UInt16) -> Bool {
        guard begin(tag, parts: 1, expected: 0) else { return false }
        submit()
        start(tag) { rbd_aio_flush(image, $0) }
        return true
    }

    var handlesRanges: Bool { true }

    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool {
        guard begin(tag, parts: list.count + (fua ? 1 : 0), expected: 0) else { return false }
        submit()
        defer { if fua { start(tag) { rbd_aio_flush(image, $0) } } }
        for r in list {
            if zeroes {
                start(tag) { rbd_aio_write_zeroes(image, r.offset, Int(r.length), $0, 0, 0) }
            } else {
                start(tag) { rbd_aio_discard(image, r.offset, r.length, $0) }
            }
        }
        return true
    }

    /// Starts the queued reads and writes: a lone request as it is, a run of adjacent ones as one
    /// readv or writev over all their iovecs.
    func submit() {
        queued.drain { run in
            let first = run[0]
            guard run.count > 1 else {
                return start(first.tag) { vectored(first.isWrite, first.iov, first.count, first.offset, $0) }
            }
            let operation = mergedOperation(first.tag)
            var iovecs = 0
            for (i, request) in run.enumerated() {
                operation.pointee.tags[i] = request.tag
                (operation.pointee.iov + iovecs).update(from: request.iov, count: request.count)
                iovecs += request.count
            }
            operation.pointee.tagCount = run.count
            let r = launch(operation, rbdMergedCompletion) { vectored(first.isWrite, operation.pointee.iov, iovecs, first.offset, $0) }
            if r < 0 { inbox.post(UnsafeBufferPointer(start: operation.pointee.tags, count: run.count), r) }
        }
    }

    @inline(__always)
    private func vectored(_ isWrite: Bool, _ iov: UnsafePointer<iovec>, _ count: Int, _ offset: UInt64, _ completion: rbd_completion_t) -> Int32 {
        isWrite ? rbd_aio_writev(image, iov, Int32(count), offset, completion) : rbd_aio_readv(image, iov, Int32(count), offset, completion)
    }

    private func mergedOperation(_ tag: UInt16) -> UnsafeMutablePointer<MergedOperation> {
        if let existing = merged[Int(tag)] { return existing }
        let operation = UnsafeMutablePointer<MergedOperation>.allocate(capacity: 1)
        operation.initialize(to: MergedOperation(inbox: .passUnretained(inbox), tags: .allocate(capacity: AdjacentRuns.maxRequests),
                                                 tagCount: 0, iov: .allocate(capacity: AdjacentRuns.maxIovecs)))
        merged[Int(tag)] = operation
        return operation
    }

    /// Starts `operation` for request `tag`; an operation librbd refuses at once is reported like any
    /// other result.
    @inline(__always)
    private func start(_ tag: UInt16, _ operation: (rbd_completion_t) -> Int32) {
        let r = launch(contexts + Int(tag), rbdCompletion, operation)
        if r < 0 { inbox.post(tag, r) }
    }

    /// Makes a completion that calls `callback` with `argument` and hands it to `operation`. Returns 0,
    /// or the -errno with which librbd refused (the completion then released: no callback comes).
    @inline(__always)
    private func launch(_ argument: UnsafeMutableRawPointer, _ callback: rbd_callback_t,
                        _ operation: (rbd_completion_t) -> Int32) -> Int32 {
        var completion: rbd_completion_t?
        var r = rbd_aio_create_completion(argument, callback, &completion)
        if r == 0, let completion {
            r = operation(completion)
            if r >= 0 { return 0 }
            rbd_aio_release(completion)
        }
        return r < 0 ? r : -EIO
    }
}

/// What a completion callback needs: where to post, and for which request.
private struct CallbackContext {
    var inbox: Unmanaged<CompletionInbox>
    var tag: UInt16
}

/// A run of adjacent requests started as one operation: its iovecs (librbd reads into them until it
/// completes) and the tags that finish with it.
private struct MergedOperation {
    var inbox: Unmanaged<CompletionInbox>
    var tags: UnsafeMutablePointer<UInt16>
    var tagCount: Int
    var iov: UnsafeMutablePointer<iovec>
}

/// librbd's completion callback for a merged operation: every request of the run gets its result.
/// The tags are read under the inbox's lock, before the worker can see (and reuse) any of them.
private func rbdMergedCompletion(_ completion: rbd_completion_t?, _ argument: UnsafeMutableRawPointer?) {
    guard let completion, let argument else { return }
    let r = rbd_aio_get_return_value(completion)
    rbd_aio_release(completion)
    let operation = argument.assumingMemoryBound(to: MergedOperation.self)
    let inbox = operation.pointee.inbox, count = operation.pointee.tagCount
    inbox.takeUnretainedValue().post(UnsafeBufferPointer(start: operation.pointee.tags, count: count), r < 0 ? Int32(clamping: r) : 0)
}

/// librbd's completion callback, on one of librbd's threads.
private func rbdCompletion(_ completion: rbd_completion_t?, _ argument: UnsafeMutableRawPointer?) {
    guard let completion, let argument else { return }
    let r = rbd_aio_get_return_value(completion)
    rbd_aio_release(completion)
    let context = argument.assumingMemoryBound(to: CallbackContext.self).pointee
    context.inbox.takeUnretainedValue().post(context.tag, r < 0 ? Int32(clamping: r) : 0)
}
