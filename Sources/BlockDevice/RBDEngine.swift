import CRBD
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// One queue's requests on an RBD image: rbd_aio_readv/writev straight between guest memory and
/// librbd, flush, discard and write zeroes; librbd's callback (on its own thread) leaves each result in
/// the inbox that wakes the queue worker. Many requests are in flight at once.
final class RBDEngine: InboxEngine, IOEngine {
    private let store: RBDStore
    private let image: rbd_image_t
    private let contexts: UnsafeMutablePointer<CallbackContext>
    private let depth: Int

    init(store: RBDStore, image: rbd_image_t, depth: Int) throws(SystemError) {
        self.store = store
        self.image = image
        self.depth = depth
        contexts = .allocate(capacity: depth)
        super.init(depth: depth, inbox: try CompletionInbox())
        for i in 0..<depth { (contexts + i).initialize(to: CallbackContext(inbox: .passUnretained(inbox), tag: UInt16(i))) }
    }

    deinit { contexts.deallocate() }

    /// librbd's threads belong to the store and nothing is in flight any more: only the store's
    /// lock hand-over hears of it.
    func shutdown() { store.engineStopped() }

    func read(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, tag: UInt16) -> Bool {
        guard begin(tag, parts: 1, expected: Self.length(iov, count: count)) else { return false }
        start(tag) { rbd_aio_readv(image, iov, Int32(count), offset, $0) }
        return true
    }

    /// With `sync` (the guest's write cache off) a flush follows the write: librbd's flush waits for
    /// the writes issued before it and takes them out of its cache to the OSDs.
    func write(fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, sync: Bool, tag: UInt16) -> Bool {
        guard begin(tag, parts: sync ? 2 : 1, expected: Self.length(iov, count: count)) else { return false }
        start(tag) { rbd_aio_writev(image, iov, Int32(count), offset, $0) }
        if sync { start(tag) { rbd_aio_flush(image, $0) } }
        return true
    }

    func flush(fd: Int32, tag: UInt16) -> Bool {
        guard begin(tag, parts: 1, expected: 0) else { return false }
        start(tag) { rbd_aio_flush(image, $0) }
        return true
    }

    var handlesRanges: Bool { true }

    func ranges(_ list: UnsafeBufferPointer<ByteRange>, zeroes: Bool, fua: Bool, tag: UInt16) -> Bool {
        guard begin(tag, parts: list.count + (fua ? 1 : 0), expected: 0) else { return false }
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

    /// librbd takes operations as they come: nothing is batched.
    func submit() {}

    /// Makes a completion for `tag` and hands it to `operation`; an operation librbd refuses at once
    /// is reported like any other result.
    @inline(__always)
    private func start(_ tag: UInt16, _ operation: (rbd_completion_t) -> Int32) {
        var completion: rbd_completion_t?
        var r = rbd_aio_create_completion(contexts + Int(tag), rbdCompletion, &completion)
        if r == 0, let completion {
            r = operation(completion)
            if r >= 0 { return }
            rbd_aio_release(completion)
        }
        inbox.post(tag, r < 0 ? r : -EIO)
    }
}

/// What a completion callback needs: where to post, and for which request.
private struct CallbackContext {
    var inbox: Unmanaged<CompletionInbox>
    var tag: UInt16
}

/// librbd's completion callback, on one of librbd's threads.
private func rbdCompletion(_ completion: rbd_completion_t?, _ argument: UnsafeMutableRawPointer?) {
    guard let completion, let argument else { return }
    let r = rbd_aio_get_return_value(completion)
    rbd_aio_release(completion)
    let context = argument.assumingMemoryBound(to: CallbackContext.self).pointee
    context.inbox.takeUnretainedValue().post(context.tag, r < 0 ? Int32(clamping: r) : 0)
}
