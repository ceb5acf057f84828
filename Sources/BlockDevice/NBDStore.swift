import CNBD
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Which NBD export to serve (`--nbd URI`): `nbd+unix:///export?socket=PATH`, `nbd://host:port/export`.
public struct NBDTarget: Sendable, Equatable {
    public var uri: String
    /// How long guest I/O waits for a lost connection to come back before it fails.
    public var retrySeconds: Int = 30

    public init(uri: String) { self.uri = uri }
}

/// An NBD export reached through libnbd. A first connection learns the export: its size, whether it is
/// read-only, what it can do (flush, trim, write zeroes, FUA) and its block sizes; each queue then
/// opens its own connection in its engine, so the export must allow several when there are several
/// queues.
final class NBDStore: NetworkStore {
    let target: NBDTarget
    let readOnly: Bool
    let logicalBlockSize: Int
    let size: UInt64
    let canFlush: Bool
    let canDiscard: Bool
    let canWriteZeroes: Bool
    let canFUA: Bool
    let canMultiConnection: Bool

    var name: String { "nbd:\(target.uri)" }

    init(_ target: NBDTarget, readOnly: Bool, logicalBlockSize: Int) throws(BlockBackendError) {
        self.target = target
        let handle: OpaquePointer
        do {
            handle = try Self.connect(target.uri)
        } catch {
            throw BlockBackendError("nbd \(target.uri): \(error.description)")
        }
        defer { nbd_close(handle) }
        let size = nbd_get_size(handle)
        guard size >= 0 else { throw BlockBackendError("nbd \(target.uri): cannot read the export size: \(Self.lastError())") }
        self.size = UInt64(size)
        self.readOnly = readOnly || nbd_is_read_only(handle) == 1
        canFlush = nbd_can_flush(handle) == 1
        canDiscard = nbd_can_trim(handle) == 1
        canWriteZeroes = nbd_can_zero(handle) == 1
        canFUA = nbd_can_fua(handle) == 1
        canMultiConnection = nbd_can_multi_conn(handle) == 1
        // The export's smallest block becomes the guest's logical block when it is bigger.
        let minimum = nbd_get_block_size(handle, Int32(LIBNBD_SIZE_MINIMUM))
        if minimum > 4096 { throw BlockBackendError("nbd \(target.uri): the export's minimum block size \(minimum) is above 4096") }
        self.logicalBlockSize = max(logicalBlockSize, Int(max(minimum, 512)))
        _ = nbd_shutdown(handle, 0)
    }

    /// A new connection to `uri`.
    static func connect(_ uri: String) throws(BlockBackendError) -> OpaquePointer {
        guard let handle = nbd_create() else { throw BlockBackendError("cannot create an NBD handle: \(lastError())") }
        guard nbd_connect_uri(handle, uri) == 0 else {
            let message = lastError()
            nbd_close(handle)
            throw BlockBackendError("cannot connect: \(message)")
        }
        return handle
    }

    static func lastError() -> String { nbd_get_error().map { String(cString: $0) } ?? "unknown error" }

    /// Nothing left: each queue's engine flushed its connection when the queue stopped.
    func flushAll() -> Int32 { 0 }

    /// The probe connection is closed already; each engine closes its own.
    func close() {}

    /// An NBD export's size is fixed for a connection.
    func currentSize() -> UInt64? { size }

    func makeEngine(depth: Int) -> any IOEngine {
        guard let engine = try? NBDEngine(store: self, depth: depth) else { return FailingEngine() }
        return engine
    }
}
