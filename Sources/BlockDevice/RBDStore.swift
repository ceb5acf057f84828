import CRBD
import Synchronization
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Which RBD image to serve and how to reach its cluster (`--rbd pool/image[@snap]` and the `--ceph-*`
/// options).
public struct RBDTarget: Sendable, Equatable {
    public var pool: String
    public var image: String
    /// A snapshot: served read-only.
    public var snapshot: String?
    /// ceph.conf (nil: librados' default search).
    public var configFile: String?
    /// The client name without `client.` (nil: admin).
    public var id: String?
    public var keyring: String?
    /// Serve the image without taking its exclusive lock (another client may hold it).
    public var force = false
    /// Hold the exclusive lock only while the queues run (live migration: the source's daemon lets go
    /// when its rings stop, the destination's takes the lock when its rings start).
    public var handover = false
    /// Seconds after which an operation the cluster does not answer fails (nil: wait for the cluster).
    public var timeoutSeconds: Int?

    /// Parses `pool/image` or `pool/image@snapshot`.
    public init?(spec: String) {
        let parts = spec.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else { return nil }
        let imageAndSnap = parts[1].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        guard !imageAndSnap[0].isEmpty, imageAndSnap.count == 1 || !imageAndSnap[1].isEmpty else { return nil }
        pool = String(parts[0])
        image = String(imageAndSnap[0])
        snapshot = imageAndSnap.count == 2 ? String(imageAndSnap[1]) : nil
    }

    public var spec: String { "\(pool)/\(image)" + (snapshot.map { "@\($0)" } ?? "") }
}

/// A Ceph RBD image opened through librbd: one cluster connection and one image handle shared by every
/// queue (librbd's handles take asynchronous operations from any thread). Unless read-only or forced,
/// the image's exclusive lock is taken at open and kept: a second daemon on the image is refused. With
/// `handover` it is held only while queues run: taken (waiting for its holder to let go) when the
/// first queue starts, released after a flush when the last one stops, so one writer at a time.
/// Sendable by hand (@unchecked): the handles are librbd's, which locks them itself.
final class RBDStore: NetworkStore, @unchecked Sendable {
    let target: RBDTarget
    let readOnly: Bool
    let logicalBlockSize: Int
    /// Set once open; every property has a value from the start, so a failed init still runs deinit,
    /// which shuts down what was made.
    private(set) var image: rbd_image_t?
    private var cluster: rados_t?
    private var ioContext: rados_ioctx_t?
    /// Whether `close()` ran: held while the handles are closed, and while the resize watch asks the
    /// size (its thread must never call into a closed image).
    private let closed = Mutex(false)
    /// With `handover`: the queues whose engines run, and whether the lock is ours.
    private let running = Mutex(0)
    /// Why the last lock hand-over failed (an errno value), for the log.
    let lockFailure = Atomic<Int32>(0)
    /// The flush before the lock was let go, if it failed (an errno value): `flushAll` reports it.
    private let releaseFlushError = Atomic<Int32>(0)

    var name: String { "rbd:\(target.spec)" }
    var canFlush: Bool { !readOnly }
    var canDiscard: Bool { !readOnly }
    var canWriteZeroes: Bool { !readOnly }

    init(_ target: RBDTarget, readOnly: Bool, logicalBlockSize: Int) throws(BlockBackendError) {
        self.target = target
        self.readOnly = readOnly || target.snapshot != nil
        self.logicalBlockSize = logicalBlockSize
        func fail(_ what: String, _ r: Int32) -> BlockBackendError {
            BlockBackendError("rbd \(target.spec): \(what): \(SystemError.describe(-r))")
        }
        // Ceph's log makes a pipe on stderr non-blocking when the client starts. That flag belongs to
        // the pipe, so every other writer into it (our log; a test run's report) would lose lines
        // whenever the reader lags: it is put back once the client is up.
        let stderrFlags = fcntl(STDERR_FILENO, F_GETFL)
        defer { if stderrFlags >= 0, fcntl(STDERR_FILENO, F_GETFL) != stderrFlags { _ = fcntl(STDERR_FILENO, F_SETFL, stderrFlags) } }
        var cluster: rados_t?
        var r = rados_create(&cluster, target.id)
        guard r == 0, let cluster else { throw fail("cannot create the cluster handle", r) }
        self.cluster = cluster
        r = rados_conf_read_file(cluster, target.configFile)
        if r < 0 { throw fail("cannot read \(target.configFile ?? "the default ceph.conf")", r) }
        var settings: [(String, String)] = [
            // A daemon started against an unreachable cluster fails instead of hanging for 5 minutes.
            ("client_mount_timeout", "30"),
            // No admin socket: its thread would accept connections (another client on the same
            // ceph.conf may probe it) and unlink the socket at exit, neither of which the sandbox allows.
            ("admin_socket", ""),
        ]
        if let keyring = target.keyring { settings.append(("keyring", keyring)) }
        if let t = target.timeoutSeconds {
            settings += [("rados_osd_op_timeout", "\(t)"), ("rados_mon_op_timeout", "\(t)")]
        }
        for (key, value) in settings {
            r = rados_conf_set(cluster, key, value)
            if r < 0 { throw fail("cannot set \(key)", r) }
        }
        r = rados_connect(cluster)
        if r < 0 { throw fail("cannot connect to the cluster", r) }
        var io: rados_ioctx_t?
        r = rados_ioctx_create(cluster, target.pool, &io)
        guard r == 0, let io else { throw fail("cannot open pool \(target.pool)", r) }
        ioContext = io
        var image: rbd_image_t?
        r = self.readOnly ? rbd_open_read_only(io, target.image, &image, target.snapshot)
                          : rbd_open(io, target.image, &image, nil)
        guard r == 0, let image else { throw fail("cannot open the image", r) }
        self.image = image
        if !self.readOnly && !target.force && !target.handover {
            r = rbd_lock_acquire(image, RBD_LOCK_MODE_EXCLUSIVE)
            if r < 0 {
                throw fail("cannot take the image's exclusive lock (another client writes to it? serve it --read-only, or --force to share it)", r)
            }
        }
    }

    deinit { close() }

    func close() {
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            if let image { rbd_close(image) }  // releases the exclusive lock
            if let ioContext { rados_ioctx_destroy(ioContext) }
            if let cluster { rados_shutdown(cluster) }
        }
    }

    /// librbd's cache (on by default, writethrough until the guest's first flush) to the OSDs.
    func flushAll() -> Int32 {
        guard let image else { return 0 }
        // Handing over, with no queue running: the cache was flushed when the lock was let go.
        if handsOver, let e = running.withLock({ $0 == 0 ? releaseFlushError.exchange(0, ordering: .relaxed) : nil }) { return e }
        let r = rbd_flush(image)
        return r < 0 ? -r : 0
    }

    func currentSize() -> UInt64? {
        closed.withLock { closed in
            var size: UInt64 = 0
            guard !closed, let image, rbd_get_size(image, &size) == 0 else { return nil }
            return size
        }
    }

    func makeEngine(depth: Int) -> any IOEngine {
        guard let image, let engine = try? RBDEngine(store: self, image: image, depth: depth) else { return FailingEngine() }
        guard handsOver else { return engine }
        let locked = running.withLock { count -> Bool in
            if count == 0 && !acquireLock(image) { return false }
            count += 1
            return true
        }
        return locked ? engine : FailingEngine()
    }

    var engineFailure: String? {
        let e = lockFailure.load(ordering: .relaxed)
        return e == 0 ? nil : "cannot take the image's exclusive lock from its holder: \(SystemError.describe(e))"
    }

    /// Whether the lock moves with the queues (`handover`, and the image is written).
    private var handsOver: Bool { target.handover && !readOnly && !target.force }

    /// An engine stopped (nothing in flight); after the last, the cache is flushed and the lock released.
    func engineStopped() {
        guard handsOver, let image else { return }
        running.withLock { count in
            count -= 1
            guard count == 0 else { return }
            let r = rbd_flush(image)
            releaseFlushError.store(r < 0 ? -r : 0, ordering: .relaxed)
            rbd_lock_release(image)
        }
    }

    /// Takes the exclusive lock, asking again every 100 ms while another client holds it (a migration's
    /// source whose rings have not stopped yet), up to the --ceph-timeout or 30 s.
    private func acquireLock(_ image: rbd_image_t) -> Bool {
        let deadline = ContinuousClock.now + .seconds(target.timeoutSeconds ?? 30)
        while true {
            let r = rbd_lock_acquire(image, RBD_LOCK_MODE_EXCLUSIVE)
            if r == 0 { return true }
            guard ContinuousClock.now < deadline else {
                lockFailure.store(-r, ordering: .relaxed)
                return false
            }
            _ = poll(nil, 0, 100)
        }
    }
}
