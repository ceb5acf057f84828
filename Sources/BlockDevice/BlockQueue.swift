import Logging
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// Processes one virtio-blk request queue on its worker thread: parses each chain, starts reads and
/// writes straight between guest memory and the disk (no bounce copies), and completes chains as
/// the engine reports them, writing the status byte last.
final class BlockQueue: QueueHandler {
    private let device: BlockDevice
    private let backend: BlockBackend
    private let engine: any IOEngine
    private let flushNegotiated: Bool
    private let logger: Logger

    /// Per head index: what to report when its I/O finishes.
    private struct Pending {
        var status: UnsafeMutablePointer<UInt8>
        var expected: Int32
        var usedLength: UInt32
    }
    private var pending: UnsafeMutablePointer<Pending>?
    /// Per head index: its iovec array, made the first time the head is used.
    private var iovecs: UnsafeMutablePointer<UnsafeMutablePointer<iovec>?>?
    private var slotCount = 0
    private var inFlight = 0
    /// The failure last logged (0: none since the last success).
    private var failure: Int32 = 0
    /// iovecs one request may use: the segments accepted plus room for buffers that cross regions.
    private let iovecCapacity: Int

    init(device: BlockDevice, engine: any IOEngine, features: UInt64, logger: Logger) {
        self.device = device
        self.backend = device.backend
        self.engine = engine
        self.flushNegotiated = features & VirtioBlock.Feature.flush != 0
        self.logger = logger
        self.iovecCapacity = device.acceptedSegments + 16
    }

    deinit {
        for i in 0..<slotCount { iovecs?[i]?.deallocate() }
        iovecs?.deallocate()
        pending?.deallocate()
    }

    var wakeDescriptors: [Int32] { engine.completionDescriptor.map { [$0] } ?? [] }

    func process(_ queue: Virtqueue) -> ProcessResult {
        if slotCount != queue.size { allocateSlots(queue.size) }
        if inFlight == 0 { engine.handleIdleEvents() } else { reapAll(queue, wait: false) }
        var queued = 0
        while let chain = queue.nextChain() {
            if start(chain, queue) {
                queued += 1
                if queued == 64 { engine.submit(); queued = 0 }
            }
        }
        if queued > 0 { engine.submit() }
        // Whatever finished already (inline I/O, fast completions) goes out in this pass.
        reapAll(queue, wait: false)
        return .done
    }

    var hasPendingWork: Bool { inFlight > 0 && engine.hasCompletions }

    func stop(_ queue: Virtqueue) {
        if inFlight > 0 { engine.beginStopping() }
        while inFlight > 0 { reapAll(queue, wait: true) }
        engine.shutdown()
    }

    private func allocateSlots(_ size: Int) {
        precondition(inFlight == 0)
        for i in 0..<slotCount { iovecs?[i]?.deallocate() }
        iovecs?.deallocate()
        pending?.deallocate()
        slotCount = size
        pending = .allocate(capacity: size)
        iovecs = .allocate(capacity: size)
        iovecs!.initialize(repeating: nil, count: size)
    }

    private func iovecArray(_ head: UInt16) -> UnsafeMutablePointer<iovec> {
        if let existing = iovecs![Int(head)] { return existing }
        let array = UnsafeMutablePointer<iovec>.allocate(capacity: iovecCapacity)
        iovecs![Int(head)] = array
        return array
    }

    private func reapAll(_ queue: Virtqueue, wait: Bool) {
        var first = wait
        while inFlight > 0 {
            let n = engine.reap(max: 64, wait: first) { tag, result in
                let p = pending![Int(tag)]
                p.status.pointee = (result == p.expected ? VirtioBlock.Status.ok : .ioError).rawValue
                noteOutcome(result == p.expected ? 0 : result, tag: tag, expected: p.expected)
                queue.complete(head: tag, written: p.usedLength)
                inFlight -= 1
            }
            first = false
            if n < 64 { break }
        }
    }

    /// Logs a failed request once per condition (an error value; a network store that is down fails
    /// every request the same way until it is back), and the recovery once.
    private func noteOutcome(_ result: Int32, tag: UInt16, expected: Int32) {
        guard result != failure else { return }
        if result == 0 {
            logger.notice("I/O succeeds again after failing with \(Self.describe(failure))")
        } else {
            logger.error("I/O on chain \(tag) failed: \(Self.describe(result)) (expected \(expected) bytes); further failures like it are not logged")
        }
        failure = result
    }

    private static func describe(_ result: Int32) -> String {
        result < 0 ? SystemError.describe(-result) : "a short transfer of \(result) bytes"
    }

    /// Handles one chain; returns true when it went to the engine (completion comes later).
    private func start(_ chain: DescriptorChain, _ queue: Virtqueue) -> Bool {
        // The status byte is the last writable byte; without one there is no way to answer.
        guard let last = chain.writable.last, last.count > 0 else {
            logger.error("request \(chain.head) has no status byte; returned unprocessed")
            queue.complete(chain, written: 0)
            return false
        }
        let status = (last.baseAddress! + last.count - 1).assumingMemoryBound(to: UInt8.self)
        func finish(_ s: VirtioBlock.Status, written: Int = 1) -> Bool {
            status.pointee = s.rawValue
            queue.complete(chain, written: written)
            return false
        }
        var reader = chain.reader()
        guard let type = reader.read(UInt32.self), let _ = reader.read(UInt32.self), let sector = reader.read(UInt64.self) else {
            return finish(.ioError)
        }
        switch VirtioBlock.RequestType(rawValue: type) {
        case .read:
            let length = chain.writableLength - 1
            return transfer(chain, queue, sector: sector, length: length, isWrite: false, status: status, finish: finish)
        case .write:
            if backend.readOnly { return finish(.ioError) }
            let length = chain.readableLength - VirtioBlock.headerSize
            return transfer(chain, queue, sector: sector, length: length, isWrite: true, status: status, finish: finish)
        case .flush:
            guard backend.canFlush, !backend.readOnly else { return finish(.ok) }
            guard engine.flush(fd: backend.fd, tag: chain.head) else { return finish(.ioError) }
            pending![Int(chain.head)] = Pending(status: status, expected: 0, usedLength: 1)
            inFlight += 1
            return true
        case .getID:
            var writer = chain.writer()
            let room = min(VirtioBlock.idLength, chain.writableLength - 1)
            _ = device.serialBytes.withUnsafeBytes { writer.write(UnsafeRawBufferPointer(rebasing: $0.prefix(room))) }
            return finish(.ok, written: room + 1)
        case .discard, .writeZeroes:
            let isDiscard = type == VirtioBlock.RequestType.discard.rawValue
            guard isDiscard ? backend.canDiscard : backend.canWriteZeroes else { return finish(.unsupported) }
            switch ranges(&reader, chain, isDiscard: isDiscard) {
            case let .finished(s):
                return finish(s)
            case let .started(count):
                pending![Int(chain.head)] = Pending(status: status, expected: 0, usedLength: 1)
                inFlight += count
                return count > 0
            }
        case nil:
            return finish(.unsupported)
        }
    }

    /// A read or a write of `length` bytes at `sector`: checked, then handed to the engine.
    @inline(__always)
    private func transfer(_ chain: DescriptorChain, _ queue: Virtqueue, sector: UInt64, length: Int, isWrite: Bool,
                          status: UnsafeMutablePointer<UInt8>, finish: (VirtioBlock.Status, Int) -> Bool) -> Bool {
        let blockSize = backend.logicalBlockSize
        let offset = sector &* UInt64(VirtioBlock.sectorSize)
        guard length >= 0, length <= device.maxTransferBytes, length % blockSize == 0, offset % UInt64(blockSize) == 0,
              sector < UInt64.max / UInt64(VirtioBlock.sectorSize),
              offset &+ UInt64(length) <= backend.sizeBytes, offset &+ UInt64(length) >= offset else {
            return finish(.ioError, 1)
        }
        let used = isWrite ? 1 : length + 1
        if length == 0 { return finish(.ok, used) }
        if backend.isNull {
            // The null target: reads see zeroes, writes go nowhere.
            if !isWrite {
                var writer = chain.writer()
                _ = writer.fill(upTo: length) { piece in piece.initializeMemory(as: UInt8.self, repeating: 0); return piece.count }
            }
            return finish(.ok, used)
        }
        let iov = iovecArray(chain.head)
        guard let count = isWrite
            ? gather(chain.readable, skip: VirtioBlock.headerSize, length: length, into: iov, capacity: iovecCapacity)
            : gather(chain.writable, skip: 0, length: length, into: iov, capacity: iovecCapacity)
        else { return finish(.ioError, used) }
        if backend.direct && !isAligned(iov, count: count, to: blockSize) {
            return finish(bounced(iov, count: count, offset: offset, length: length, isWrite: isWrite), used)
        }
        let queued = isWrite
            ? engine.write(fd: backend.fd, iov, count: count, offset: offset, sync: writeThrough, tag: chain.head)
            : engine.read(fd: backend.fd, iov, count: count, offset: offset, tag: chain.head)
        guard queued else { return finish(.ioError, used) }
        pending![Int(chain.head)] = Pending(status: status, expected: Int32(length), usedLength: UInt32(used))
        inFlight += 1
        return true
    }

    /// Without FLUSH negotiated, or with the guest's write cache turned off, writes must be stable
    /// before they complete.
    private var writeThrough: Bool { !flushNegotiated || !device.writeback }

    /// O_DIRECT needs aligned memory; a request from unaligned guest buffers goes through an aligned
    /// copy, synchronously. Rare (Linux guests use page-aligned buffers), so it may allocate; the size
    /// is bounded by `maxTransferBytes`.
    private func bounced(_ iov: UnsafePointer<iovec>, count: Int, offset: UInt64, length: Int, isWrite: Bool) -> VirtioBlock.Status {
        guard let buffer = UnsafeMutableRawPointer(aligned: backend.logicalBlockSize, bytes: length) else { return .ioError }
        defer { free(buffer) }
        var position = 0
        if isWrite {
            for i in 0..<count {
                (buffer + position).copyMemory(from: iov[i].iov_base!, byteCount: iov[i].iov_len)
                position += iov[i].iov_len
            }
            let n = pwrite(backend.fd, buffer, length, off_t(offset))
            if n == length && writeThrough { fdatasync(backend.fd) }
            return n == length ? .ok : .ioError
        }
        guard pread(backend.fd, buffer, length, off_t(offset)) == length else { return .ioError }
        for i in 0..<count {
            iov[i].iov_base!.copyMemory(from: buffer + position, byteCount: iov[i].iov_len)
            position += iov[i].iov_len
        }
        return .ok
    }

    private enum RangesOutcome {
        case finished(VirtioBlock.Status)
        /// Handed to the engine as `count` operations (0 or 1).
        case started(Int)
    }

    /// DISCARD and WRITE_ZEROES: every range is checked before any is applied; a network store's engine
    /// takes them all as one operation.
    private func ranges(_ reader: inout ChainReader, _ chain: DescriptorChain, isDiscard: Bool) -> RangesOutcome {
        switch checkedRanges(&reader, chain, isDiscard: isDiscard) {
        case let .answer(status):
            return .finished(status)
        case let .ranges(list):
            if engine.handlesRanges {
                let queued = list.withUnsafeBufferPointer {
                    engine.ranges($0, zeroes: !isDiscard, fua: writeThrough, tag: chain.head)
                }
                return queued ? .started(1) : .finished(.ioError)
            }
            return .finished(applyOnFile(list, isDiscard: isDiscard))
        }
    }

    private enum CheckedRanges {
        case ranges([ByteRange])
        /// Refused (or nothing to do): the status to answer with.
        case answer(VirtioBlock.Status)
    }

    private func checkedRanges(_ reader: inout ChainReader, _ chain: DescriptorChain, isDiscard: Bool) -> CheckedRanges {
        func fail(_ s: VirtioBlock.Status) -> CheckedRanges { .answer(s) }
        if backend.readOnly { return fail(.ioError) }
        let bytes = chain.readableLength - VirtioBlock.headerSize
        guard bytes > 0, bytes % VirtioBlock.rangeSize == 0, bytes / VirtioBlock.rangeSize <= Int(device.maxRanges) else {
            return fail(.unsupported)
        }
        let count = bytes / VirtioBlock.rangeSize
        let sectorsPerBlock = UInt64(backend.logicalBlockSize / VirtioBlock.sectorSize)
        var list: [ByteRange] = []
        list.reserveCapacity(count)
        for _ in 0..<count {
            guard let sector = reader.read(UInt64.self), let sectors = reader.read(UInt32.self), let flags = reader.read(UInt32.self) else {
                return fail(.ioError)
            }
            // Discard takes no flags; write zeroes knows only UNMAP.
            if flags & ~(isDiscard ? 0 : VirtioBlock.rangeFlagUnmap) != 0 { return fail(.unsupported) }
            guard sectors <= device.maxDiscardSectors, sector % sectorsPerBlock == 0, UInt64(sectors) % sectorsPerBlock == 0,
                  sector <= backend.sizeBytes / UInt64(VirtioBlock.sectorSize),
                  (sector + UInt64(sectors)) * UInt64(VirtioBlock.sectorSize) <= backend.sizeBytes else { return fail(.ioError) }
            if sectors == 0 { continue }
            list.append(ByteRange(offset: sector * UInt64(VirtioBlock.sectorSize), length: UInt64(sectors) * UInt64(VirtioBlock.sectorSize),
                                  unmap: flags & VirtioBlock.rangeFlagUnmap != 0))
        }
        // Nothing to do (every range empty) is done.
        if list.isEmpty && engine.handlesRanges { return fail(.ok) }
        return .ranges(list)
    }

    /// Discards or zeroes the ranges of a local file (or does nothing for the null target).
    private func applyOnFile(_ list: [ByteRange], isDiscard: Bool) -> VirtioBlock.Status {
        for r in list {
            let e = isDiscard ? backend.discard(offset: r.offset, length: r.length)
                              : backend.writeZeroes(offset: r.offset, length: r.length, unmap: r.unmap)
            if e != 0 {
                // Discard is a hint: a back end that cannot deallocate still succeeds.
                if isDiscard && e == EOPNOTSUPP { continue }
                logger.error("\(isDiscard ? "discard" : "write zeroes") at \(r.offset)+\(r.length) failed: \(SystemError.describe(e))")
                return .ioError
            }
        }
        if !writeThrough || isDiscard || backend.isNull { return .ok }
        return fdatasync(backend.fd) == 0 ? .ok : .ioError
    }
}

extension UnsafeMutableRawPointer {
    /// posix_memalign; release with free().
    init?(aligned alignment: Int, bytes: Int) {
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, alignment, bytes) == 0, let p else { return nil }
        self = p
    }
}
