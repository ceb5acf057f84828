import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// The persistent state of an RPMB device in one file: the data, the authentication key and the write
/// counter, kept crash-consistent.
///
/// Layout (integers little-endian):
/// - superblock at 0 (4 KiB): magic, version, capacity in 128 KiB units, a SHA-256 of those fields;
/// - two state slots at `slotOffset(0)` and `slotOffset(1)` (64 KiB each): magic, sequence number, write
///   counter, key flag and key, the authenticated write it records (address, block count, the blocks)
///   and a SHA-256 of all of it. The valid slot with the higher sequence number is the state;
/// - the data, `capacityUnits` × 128 KiB, at `dataOffset`.
///
/// An authenticated write is committed in two ordered steps, each followed by a sync: (1) the new state
/// (counter + 1, and the blocks themselves) goes into the slot that is not current, (2) the blocks are
/// written in place. A crash before (1) is durable leaves the old slot current (a torn new slot fails
/// its checksum) and the data untouched; after (1), opening the image writes the current slot's
/// blocks in place again (idempotent), so step (2) is finished whatever it had done. The counter never
/// moves without its data, and the data never changes without the counter.
public final class RPMBImage {
    /// The unit of `capacity` in the device's config space.
    public static let unitBytes = 128 << 10
    /// The largest capacity virtio-rpmb allows (0x80 units: 16 MiB).
    public static let maxCapacityUnits = 0x80
    /// The most blocks one authenticated write may carry (max_wr_cnt is a u8).
    public static let maxBlocksPerWrite = 255

    static let magic: [UInt8] = Array("VHURPMB1".utf8)
    static let slotMagic: [UInt8] = Array("RPMBSLOT".utf8)
    static let version: UInt32 = 1
    static let superblockSize = 4096
    static let slotHeaderSize = 128
    static let slotSize = 64 << 10
    static let dataOffset = superblockSize + 2 * slotSize
    static func slotOffset(_ index: Int) -> Int { superblockSize + index * slotSize }

    /// Slot header fields.
    enum Slot {
        static let sequence = 8, counter = 16, flags = 20, key = 24, address = 56, blockCount = 60, digest = 64
        static let digested = 0..<64
        static let keyProgrammed: UInt32 = 1
    }

    public let file: any ImageFile
    public let capacityUnits: Int
    /// The number of 256-byte blocks (RPMB addresses 0..<blockCount).
    public var blockCount: Int { capacityUnits * Self.unitBytes / RPMBFrame.blockSize }
    public private(set) var key: AuthenticationKey?
    public private(set) var writeCounter: UInt32 = 0
    private var sequence: UInt64 = 0
    /// The first I/O error since the image was opened. The image then refuses every request until it is
    /// opened again (and recovered): after a failed write or sync, what the file holds is known only then.
    public private(set) var failure: RPMBImageError?
    /// One slot's bytes: where the next state is built (allocated once).
    private let slot: UnsafeMutableRawBufferPointer

    /// The size of an image of `capacityUnits` units.
    public static func fileSize(capacityUnits: Int) -> Int { dataOffset + capacityUnits * unitBytes }

    /// Opens an image and recovers its state: the current slot's write is (re)applied in place.
    public init(file: any ImageFile) throws(RPMBImageError) {
        self.file = file
        capacityUnits = try Self.readSuperblock(file)
        slot = .allocate(byteCount: Self.slotSize, alignment: 4096)
        slot.initializeMemory(as: UInt8.self, repeating: 0)
        // Fully initialized from here: if recovery throws, deinit frees the slot.
        try recover()
    }

    /// Checks the superblock; returns the capacity in units.
    private static func readSuperblock(_ file: any ImageFile) throws(RPMBImageError) -> Int {
        guard file.size >= dataOffset else { throw RPMBImageError("not an RPMB image: too small") }
        return try withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { (header) throws(RPMBImageError) -> Int in
            try file.read(at: 0, into: header)
            guard Array(header[0..<8]) == magic else { throw RPMBImageError("not an RPMB image: bad magic") }
            guard digest(UnsafeRawBufferPointer(rebasing: header[0..<32])) == Array(header[32..<64]) else {
                throw RPMBImageError("the image's superblock is damaged (checksum mismatch)")
            }
            let found = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            guard found == version else { throw RPMBImageError("unsupported image version \(found)") }
            let units = Int(header.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
            guard (1...maxCapacityUnits).contains(units), file.size >= fileSize(capacityUnits: units) else {
                throw RPMBImageError("the image's capacity (\(units) units) does not match its size")
            }
            return units
        }
    }

    deinit { slot.deallocate() }

    /// Picks the current slot and finishes the write it records.
    private func recover() throws(RPMBImageError) {
        var best: (index: Int, sequence: UInt64)?
        for index in 0..<2 {
            guard let sequence = try loadSlot(index), sequence > (best?.sequence ?? 0) else { continue }
            best = (index, sequence)
        }
        guard let best else { throw RPMBImageError("the image has no valid state slot") }
        _ = try loadSlot(best.index)
        sequence = best.sequence
        writeCounter = slot.loadUnaligned(fromByteOffset: Slot.counter, as: UInt32.self).littleEndian
        let flags = slot.loadUnaligned(fromByteOffset: Slot.flags, as: UInt32.self).littleEndian
        key = flags & Slot.keyProgrammed != 0
            ? AuthenticationKey(copying: UnsafeRawBufferPointer(rebasing: slot[Slot.key..<Slot.key + AuthenticationKey.size])) : nil
        try applySlotWrite()
    }

    /// Reads slot `index` into `slot`; returns its sequence number, or nil when it is not valid.
    private func loadSlot(_ index: Int) throws(RPMBImageError) -> UInt64? {
        try file.read(at: Self.slotOffset(index), into: slot)
        guard Array(slot[0..<8]) == Self.slotMagic else { return nil }
        let blocks = Int(slot.loadUnaligned(fromByteOffset: Slot.blockCount, as: UInt32.self).littleEndian)
        let address = Int(slot.loadUnaligned(fromByteOffset: Slot.address, as: UInt32.self).littleEndian)
        guard blocks <= Self.maxBlocksPerWrite, address + blocks <= Self.maxCapacityUnits * Self.unitBytes / RPMBFrame.blockSize,
              Self.slotDigest(slot, blocks: blocks) == Array(slot[Slot.digest..<Slot.digest + 32]) else { return nil }
        return slot.loadUnaligned(fromByteOffset: Slot.sequence, as: UInt64.self).littleEndian
    }

    /// Writes the blocks the slot in `slot` records to their place in the data area, then syncs.
    private func applySlotWrite() throws(RPMBImageError) {
        let blocks = Int(slot.loadUnaligned(fromByteOffset: Slot.blockCount, as: UInt32.self).littleEndian)
        guard blocks > 0 else { return }
        let address = Int(slot.loadUnaligned(fromByteOffset: Slot.address, as: UInt32.self).littleEndian)
        guard address + blocks <= blockCount else { throw RPMBImageError("the image's last write lies beyond its capacity") }
        let data = UnsafeRawBufferPointer(rebasing: slot[Self.slotHeaderSize..<Self.slotHeaderSize + blocks * RPMBFrame.blockSize])
        try file.write(at: Self.dataOffset + address * RPMBFrame.blockSize, from: data)
        try file.sync()
    }

    /// Programs the authentication key (once: the caller checks that none is programmed).
    public func programKey(_ newKey: AuthenticationKey) throws(RPMBImageError) {
        try failStop { () throws(RPMBImageError) in
            try commit(counter: writeCounter, key: newKey, address: 0, blocks: 0) { _ in }
            key = newKey
        }
    }

    /// An authenticated write: `blocks` blocks from the data fields of the frames at `frames`, at
    /// `address`, and the write counter incremented, as one crash-consistent step.
    public func write(address: Int, blocks: Int, frames: UnsafeRawPointer) throws(RPMBImageError) {
        precondition(blocks > 0 && blocks <= Self.maxBlocksPerWrite && address + blocks <= blockCount && writeCounter < .max)
        try failStop { () throws(RPMBImageError) in
            try commit(counter: writeCounter + 1, key: key, address: address, blocks: blocks) { data in
                for i in 0..<blocks {
                    (data + i * RPMBFrame.blockSize).copyMemory(from: frames + i * RPMBFrame.size + RPMBFrame.Offset.data,
                                                                byteCount: RPMBFrame.blockSize)
                }
            }
            writeCounter += 1
            try applySlotWrite()
        }
    }

    /// Reads `blocks` blocks at `address` into the data fields of the frames at `frames`.
    public func read(address: Int, blocks: Int, frames: UnsafeMutableRawPointer) throws(RPMBImageError) {
        precondition(address + blocks <= blockCount)
        try failStop { () throws(RPMBImageError) in
            for i in 0..<blocks {
                try file.read(at: Self.dataOffset + (address + i) * RPMBFrame.blockSize,
                              into: UnsafeMutableRawBufferPointer(start: frames + i * RPMBFrame.size + RPMBFrame.Offset.data,
                                                                  count: RPMBFrame.blockSize))
            }
        }
    }

    /// Runs one operation unless the image already failed; an error makes it fail from then on.
    private func failStop(_ operation: () throws(RPMBImageError) -> Void) throws(RPMBImageError) {
        if let failure { throw failure }
        do throws(RPMBImageError) {
            try operation()
        } catch {
            failure = error
            throw error
        }
    }

    /// Builds the next state in `slot` and makes it durable in the slot that is not current.
    private func commit(counter: UInt32, key: AuthenticationKey?, address: Int, blocks: Int,
                        data fill: (UnsafeMutableRawPointer) -> Void) throws(RPMBImageError) {
        let next = sequence + 1
        Self.encodeSlot(into: slot, sequence: next, counter: counter, key: key, address: address, blocks: blocks, fill: fill)
        let length = Self.slotHeaderSize + blocks * RPMBFrame.blockSize
        try file.write(at: Self.slotOffset(Int(next % 2)), from: UnsafeRawBufferPointer(rebasing: slot[0..<length]))
        try file.sync()
        sequence = next
    }

    static func encodeSlot(into slot: UnsafeMutableRawBufferPointer, sequence: UInt64, counter: UInt32, key: AuthenticationKey?,
                           address: Int, blocks: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        UnsafeMutableRawBufferPointer(rebasing: slot[0..<slotHeaderSize]).initializeMemory(as: UInt8.self, repeating: 0)
        slot.copyBytes(from: slotMagic)
        slot.storeBytes(of: sequence.littleEndian, toByteOffset: Slot.sequence, as: UInt64.self)
        slot.storeBytes(of: counter.littleEndian, toByteOffset: Slot.counter, as: UInt32.self)
        slot.storeBytes(of: (key == nil ? 0 : Slot.keyProgrammed).littleEndian, toByteOffset: Slot.flags, as: UInt32.self)
        if let key { key.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: slot[Slot.key...]).copyMemory(from: $0) } }
        slot.storeBytes(of: UInt32(address).littleEndian, toByteOffset: Slot.address, as: UInt32.self)
        slot.storeBytes(of: UInt32(blocks).littleEndian, toByteOffset: Slot.blockCount, as: UInt32.self)
        fill(slot.baseAddress! + slotHeaderSize)
        let digest = slotDigest(UnsafeMutableRawBufferPointer(slot), blocks: blocks)
        UnsafeMutableRawBufferPointer(rebasing: slot[Slot.digest..<Slot.digest + 32]).copyBytes(from: digest)
    }

    static func slotDigest(_ slot: UnsafeMutableRawBufferPointer, blocks: Int) -> [UInt8] {
        var hash = SHA256()
        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: slot[Slot.digested]))
        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: slot[slotHeaderSize..<slotHeaderSize + blocks * RPMBFrame.blockSize]))
        return Array(hash.finalize())
    }

    static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hash = SHA256()
        hash.update(bufferPointer: bytes)
        return Array(hash.finalize())
    }

    /// Lays out a new image in `file` (which must be `fileSize(capacityUnits:)` bytes, zero-filled):
    /// superblock, a first state slot (counter 0, `key` if given) and zeroed data, then syncs.
    public static func format(_ file: any ImageFile, capacityUnits: Int, key: AuthenticationKey? = nil) throws(RPMBImageError) {
        try format(file, capacityUnits: capacityUnits, key: key, counter: 0)
    }

    /// `format` with a given write counter: tests of a counter near its end.
    static func format(_ file: any ImageFile, capacityUnits: Int, key: AuthenticationKey?, counter: UInt32) throws(RPMBImageError) {
        guard (1...maxCapacityUnits).contains(capacityUnits) else {
            throw RPMBImageError("the capacity must be 1 to \(maxCapacityUnits) units of 128 KiB")
        }
        var header = [UInt8](repeating: 0, count: 64)
        header.replaceSubrange(0..<8, with: magic)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            h.storeBytes(of: UInt32(capacityUnits).littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        header.replaceSubrange(32..<64, with: header.withUnsafeBytes { digest(UnsafeRawBufferPointer(rebasing: $0[0..<32])) })
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: slotHeaderSize + header.count, alignment: 8)
        defer { buffer.deallocate() }
        let slot = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<slotHeaderSize])
        encodeSlot(into: slot, sequence: 1, counter: counter, key: key, address: 0, blocks: 0) { _ in }
        UnsafeMutableRawBufferPointer(rebasing: buffer[slotHeaderSize...]).copyBytes(from: header)
        try file.write(at: 0, from: UnsafeRawBufferPointer(rebasing: buffer[slotHeaderSize...]))
        try file.write(at: slotOffset(1), from: UnsafeRawBufferPointer(slot))
        try file.sync()
    }

    /// Creates a new image file at `path` (never over an existing file): written in full and synced
    /// under a temporary name, then linked into place, so a crash leaves no half-made image.
    public static func create(path: String, capacityUnits: Int, key: AuthenticationKey? = nil) throws(RPMBImageError) {
        guard (1...maxCapacityUnits).contains(capacityUnits) else {
            throw RPMBImageError("the capacity must be 1 to \(maxCapacityUnits) units of 128 KiB (128K to 16M)")
        }
        let temporary = "\(path).new-\(getpid())"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RPMBImageError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        close(fd)
        defer { unlink(temporary) }
        guard truncate(temporary, off_t(fileSize(capacityUnits: capacityUnits))) == 0 else {
            throw RPMBImageError("cannot size \(temporary): \(String(cString: strerror(errno)))")
        }
        try format(PosixImageFile(path: temporary), capacityUnits: capacityUnits, key: key)
        guard link(temporary, path) == 0 else {
            throw RPMBImageError("cannot create the image \(path): \(String(cString: strerror(errno)))")
        }
        syncDirectory(of: path)
    }

    private static func syncDirectory(of path: String) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
