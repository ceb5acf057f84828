// One libblkio `virtio-blk-vhost-user` instance: connect to a vhost-user-blk socket, start with N
// queues, and hand out buffers from mapped memory regions (the only memory the backend can reach).
import CBlkio
#if canImport(Glibc)
import Glibc
#endif

struct BlkioError: Error, CustomStringConvertible { let description: String }

/// libblkio's message for a negative errno return.
func blkioFailure(_ rc: Int32, _ what: String) -> BlkioError {
    let detail = blkio_get_error_msg().map { String(cString: $0) } ?? ""
    return BlkioError(description: "\(what): \(detail.isEmpty ? String(cString: strerror(-rc)) : detail)")
}

@inline(__always)
private func check(_ rc: Int32, _ what: @autoclosure () -> String) throws {
    if rc < 0 { throw blkioFailure(rc, what()) }
}

/// A queue handle, used by exactly one thread at a time.
struct QueueHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Memory mapped for I/O: a base address that threads carve per-slot buffers out of.
struct MappedMemory: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
}

final class BlockDevice {
    private var handle: OpaquePointer?
    private var regions: [blkio_mem_region] = []
    let capacity: UInt64
    let queues: [QueueHandle]

    init(socket: String, queueCount: Int, queueSize: Int?) throws {
        var b: OpaquePointer?
        try check(blkio_create("virtio-blk-vhost-user", &b), "blkio_create(virtio-blk-vhost-user)")
        handle = b
        do {
            try check(blkio_set_str(b, "path", socket), "set path")
            try check(blkio_connect(b), "connect to \(socket)")
            var maxQueues: Int32 = 0
            try check(blkio_get_int(b, "max-queues", &maxQueues), "get max-queues")
            guard queueCount >= 1, queueCount <= Int(maxQueues) else {
                throw BlkioError(description: "--queues \(queueCount): the device offers 1...\(maxQueues)")
            }
            try check(blkio_set_int(b, "num-queues", Int32(queueCount)), "set num-queues")
            if let queueSize {
                try check(blkio_set_int(b, "queue-size", Int32(queueSize)), "set queue-size")
            }
            try check(blkio_start(b), "start")
            var capacity: UInt64 = 0
            try check(blkio_get_uint64(b, "capacity", &capacity), "get capacity")
            self.capacity = capacity
            queues = try (0..<queueCount).map { i in
                guard let q = blkio_get_queue(b, Int32(i)) else { throw BlkioError(description: "no queue \(i)") }
                // Application-level polling: blkioq_do_io(min 0) in a loop, no completion eventfd.
                blkioq_set_completion_fd_enabled(q, false)
                return QueueHandle(pointer: q)
            }
        } catch {
            blkio_destroy(&handle)
            throw error
        }
    }

    /// One FLUSH on queue 0, waited for (polling). A device without a write cache (no FLUSH feature)
    /// answers ENOTSUP: nothing to flush. Throws when it fails otherwise.
    func flush() throws {
        let q = queues[0].pointer
        blkioq_flush(q, nil, 0)
        var completion = blkio_completion()
        let deadline = monotonicNanoseconds() + nanoseconds(30)
        while true {
            let n = blkioq_do_io(q, &completion, 0, 1, nil)
            try check(n, "flush")
            if n == 1 { return try check(completion.ret == -ENOTSUP ? 0 : completion.ret, "flush") }
            if monotonicNanoseconds() > deadline { throw BlkioError(description: "flush: no completion after 30 s") }
        }
    }

    /// Allocates and maps at least `length` bytes (rounded up to the driver's alignment), zeroed.
    func map(length: Int) throws -> MappedMemory {
        var alignment: UInt64 = 0
        try check(blkio_get_uint64(handle, "mem-region-alignment", &alignment), "get mem-region-alignment")
        let align = max(Int(alignment), Int(getpagesize()))
        let rounded = (length + align - 1) / align * align
        var region = blkio_mem_region()
        try check(blkio_alloc_mem_region(handle, &region, rounded), "alloc_mem_region(\(rounded))")
        let rc = blkio_map_mem_region(handle, &region)
        if rc < 0 {
            blkio_free_mem_region(handle, &region)
            throw blkioFailure(rc, "map_mem_region(\(rounded))")
        }
        regions.append(region)
        memset(region.addr, 0, rounded)
        return MappedMemory(base: region.addr, length: rounded)
    }

    /// Unmaps the regions and closes the connection.
    func close() {
        guard handle != nil else { return }
        for var r in regions {
            blkio_unmap_mem_region(handle, &r)
            blkio_free_mem_region(handle, &r)
        }
        regions = []
        blkio_destroy(&handle)
    }

    deinit { close() }
}
