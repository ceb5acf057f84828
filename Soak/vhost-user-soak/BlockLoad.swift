import BlockDevice
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-blk over an image on tmpfs: random reads, writes, flushes, discards, write-zeroes and
/// GET_ID on every queue, with buffers split and merged in random ways. Every sector written carries
/// (sector number, generation) stamps, and a model of the disk says which generations each sector
/// may hold, so every read is checked. Requests in flight never overlap a write in flight.
final class BlockLoad: LoadProfile {
    static let name = "blk"
    static let variants: [(suffix: String, arguments: [String])] = [
        ("threads", ["--engine", "threads"]),
        ("io_uring", ["--engine", "io_uring"]),
        // All four queues on one worker thread (a queue group): restarts stop and start them together.
        ("one-worker", ["--engine", "io_uring", "--workers", "1"]),
    ]

    static let sectors = 65536  // a 32 MiB image
    static let queues = 4
    static let serial = "soak-blk"
    private static let maxSectorsPerRequest = 64
    private static let magic: UInt64 = 0x5eed_b10c << 32

    private enum Kind { case read, write, flush, getID, discard, writeZeroes }
    private struct Pending {
        var kind: Kind
        var ranges: [(sector: Int, count: Int)]
        var generation: UInt32
        var expectedUsed: UInt32
        var statusOffset: Int
    }

    let image: String
    private let sectorSize = VirtioBlock.sectorSize
    /// The generation each sector holds (0: zeroes), and for sectors whose content is uncertain
    /// (a write or discard given up in flight), every generation it may hold.
    private var current = [UInt32](repeating: 0, count: BlockLoad.sectors)
    private var alternatives: [Int: Set<UInt32>] = [:]
    private var readers = [UInt16](repeating: 0, count: BlockLoad.sectors)
    private var writing = [Bool](repeating: false, count: BlockLoad.sectors)
    private var pending: [Int: Pending] = [:]
    private var nextTag = 0
    private var nextGeneration: UInt32 = 1
    private(set) var bytesVerified = 0

    init(files: String) throws {
        image = "\(files)/disk.img"
        let fd = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SoakError("cannot create \(image): \(SystemError.describe(errno))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(Self.sectors * VirtioBlock.sectorSize)) == 0 else {
            throw SoakError("cannot size \(image): \(SystemError.describe(errno))")
        }
    }

    var executable: String { "vhost-user-blk" }
    var arguments: [String] { ["--blk-file", image, "--num-queues", String(Self.queues), "--serial", Self.serial] }
    var maxQueues: Int { Self.queues }
    var maxQueueSize: Int { 256 }
    var slabBytes: Int { VirtioBlock.headerSize + Self.maxSectorsPerRequest * VirtioBlock.sectorSize + 64 }

    // MARK: Making requests

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        let kind = random.weighted([(Kind.read, 40), (.write, 40), (.flush, 5), (.getID, 3), (.discard, 6), (.writeZeroes, 6)])
        var p = Pending(kind: kind, ranges: [], generation: 0, expectedUsed: 1, statusOffset: 0)
        var buffers: [SlabBuffer] = []
        let header = VirtioBlock.headerSize
        func putHeader(_ type: VirtioBlock.RequestType, sector: Int) {
            slab.storeBytes(of: type.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
            slab.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            slab.storeBytes(of: UInt64(sector).littleEndian, toByteOffset: 8, as: UInt64.self)
        }

        switch kind {
        case .read, .write:
            let isWrite = kind == .write
            let count = random.weighted([(Int.random(in: 1...8, using: &random), 6), (Int.random(in: 9...Self.maxSectorsPerRequest, using: &random), 4)])
            guard let sector = freeRange(count: count, forWrite: isWrite, random: &random) else { return nil }
            p.ranges = [(sector, count)]
            putHeader(isWrite ? .write : .read, sector: sector)
            let length = count * sectorSize
            if isWrite {
                p.generation = takeGeneration()
                for i in 0..<count { stamp(slab, at: header + i * sectorSize, sector: sector + i, generation: p.generation) }
            } else {
                // A sector the daemon leaves unwritten must not pass for a valid one.
                for i in 0..<count { slab.storeBytes(of: UInt64(0xdead_dead_dead_dead), toByteOffset: header + i * sectorSize, as: UInt64.self) }
                p.expectedUsed = UInt32(length + 1)
            }
            // Header, data in one to three pieces, status; the header may share a buffer with the
            // data of a write, the status with the data of a read.
            var pieces = split(header, length, into: Int.random(in: 1...3, using: &random), random: &random)
            if isWrite && random.chance(20) { pieces[0] = (0, pieces[0].start + pieces[0].length) } else { buffers.append(.init(offset: 0, length: header, writable: false)) }
            p.statusOffset = header + length
            let mergeStatus = !isWrite && random.chance(20)
            for (i, piece) in pieces.enumerated() {
                let last = i == pieces.count - 1
                buffers.append(.init(offset: piece.start, length: piece.length + (last && mergeStatus ? 1 : 0), writable: !isWrite))
            }
            if !mergeStatus { buffers.append(.init(offset: p.statusOffset, length: 1, writable: true)) }
            mark(p.ranges, writing: isWrite, on: true)

        case .flush:
            putHeader(.flush, sector: 0)
            p.statusOffset = header
            buffers = [.init(offset: 0, length: header, writable: false), .init(offset: header, length: 1, writable: true)]

        case .getID:
            putHeader(.getID, sector: 0)
            let id = VirtioBlock.idLength
            for i in 0...id { slab[header + i] = 0xee }
            p.statusOffset = header + id
            p.expectedUsed = UInt32(id + 1)
            buffers = [.init(offset: 0, length: header, writable: false)]
            buffers += random.chance(50) ? [.init(offset: header, length: id + 1, writable: true)]
                                         : [.init(offset: header, length: id, writable: true), .init(offset: header + id, length: 1, writable: true)]

        case .discard, .writeZeroes:
            let isDiscard = kind == .discard
            putHeader(isDiscard ? .discard : .writeZeroes, sector: 0)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let count = Int.random(in: 1...128, using: &random)
                guard let sector = freeRange(count: count, forWrite: true, random: &random) else { continue }
                mark([(sector, count)], writing: true, on: true)
                p.ranges.append((sector, count))
            }
            guard !p.ranges.isEmpty else { return nil }
            for (i, r) in p.ranges.enumerated() {
                let at = header + i * VirtioBlock.rangeSize
                let flags: UInt32 = !isDiscard && random.chance(50) ? VirtioBlock.rangeFlagUnmap : 0
                slab.storeBytes(of: UInt64(r.sector).littleEndian, toByteOffset: at, as: UInt64.self)
                slab.storeBytes(of: UInt32(r.count).littleEndian, toByteOffset: at + 8, as: UInt32.self)
                slab.storeBytes(of: flags.littleEndian, toByteOffset: at + 12, as: UInt32.self)
            }
            let rangeBytes = p.ranges.count * VirtioBlock.rangeSize
            p.statusOffset = header + rangeBytes
            buffers = random.chance(30) ? [.init(offset: 0, length: header + rangeBytes, writable: false)]
                                        : [.init(offset: 0, length: header, writable: false), .init(offset: header, length: rangeBytes, writable: false)]
            buffers.append(.init(offset: p.statusOffset, length: 1, writable: true))
        }
        slab[p.statusOffset] = 0xff
        nextTag += 1
        pending[nextTag] = p
        return LoadRequest(buffers: buffers, tag: nextTag)
    }

    private func takeGeneration() -> UInt32 {
        defer { nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1 }
        return nextGeneration
    }

    /// A start sector for `count` sectors that no write in flight touches (nor a read, for a write).
    private func freeRange(count: Int, forWrite: Bool, random: inout SoakRandom) -> Int? {
        for _ in 0..<8 {
            let start = Int.random(in: 0...(Self.sectors - count), using: &random)
            if (start..<start + count).allSatisfy({ !writing[$0] && (!forWrite || readers[$0] == 0) }) { return start }
        }
        return nil
    }

    private func mark(_ ranges: [(sector: Int, count: Int)], writing isWrite: Bool, on: Bool) {
        for r in ranges {
            for s in r.sector..<r.sector + r.count {
                if isWrite { writing[s] = on } else { readers[s] = on ? readers[s] + 1 : readers[s] - 1 }
            }
        }
    }

    /// `length` bytes from `start` cut into at most `pieces` ranges at random points.
    private func split(_ start: Int, _ length: Int, into pieces: Int, random: inout SoakRandom) -> [(start: Int, length: Int)] {
        var cuts = Set((1..<pieces).map { _ in Int.random(in: 1..<length, using: &random) })
        cuts.insert(length)
        var from = 0
        return cuts.sorted().map { end in
            defer { from = end }
            return (start + from, end - from)
        }
    }

    // MARK: Sector stamps

    private func word(_ sector: Int, _ generation: UInt32, _ i: Int) -> UInt64 {
        (UInt64(sector) &* 0x9e37_79b9_7f4a_7c15) ^ (UInt64(generation) << 32 | UInt64(i))
    }

    private func stamp(_ slab: UnsafeMutableRawBufferPointer, at offset: Int, sector: Int, generation: UInt32) {
        slab.storeBytes(of: Self.magic ^ UInt64(sector), toByteOffset: offset, as: UInt64.self)
        slab.storeBytes(of: UInt64(generation), toByteOffset: offset + 8, as: UInt64.self)
        for i in 2..<sectorSize / 8 { slab.storeBytes(of: word(sector, generation, i), toByteOffset: offset + i * 8, as: UInt64.self) }
    }

    /// The generation the sector data at `offset` holds (0 for zeroes), or what is wrong with it.
    private func generation(in slab: UnsafeMutableRawBufferPointer, at offset: Int, sector: Int) -> Result<UInt32, SoakError> {
        let first = slab.load(fromByteOffset: offset, as: UInt64.self)
        if first == 0 {
            for i in 1..<sectorSize / 8 where slab.load(fromByteOffset: offset + i * 8, as: UInt64.self) != 0 {
                return .failure(SoakError("sector \(sector) is neither zeroes nor stamped (word \(i))"))
            }
            return .success(0)
        }
        guard first == Self.magic ^ UInt64(sector) else {
            let other = first ^ Self.magic
            return .failure(SoakError(other < UInt64(Self.sectors) ? "sector \(sector) holds sector \(other)'s data" : "sector \(sector) holds no stamp (0x\(String(first, radix: 16)))"))
        }
        let generation = UInt32(truncatingIfNeeded: slab.load(fromByteOffset: offset + 8, as: UInt64.self))
        for i in 2..<sectorSize / 8 where slab.load(fromByteOffset: offset + i * 8, as: UInt64.self) != word(sector, generation, i) {
            return .failure(SoakError("sector \(sector) generation \(generation) is torn at word \(i)"))
        }
        return .success(generation)
    }

    private func allowed(_ sector: Int) -> Set<UInt32> { alternatives[sector] ?? [current[sector]] }

    // MARK: Completions

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let p = pending.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        let status = slab[p.statusOffset]
        release(p)
        guard status == VirtioBlock.Status.ok.rawValue else { return "\(p.kind) \(describe(p.ranges)): status \(status)" }
        guard usedLength == p.expectedUsed else { return "\(p.kind) \(describe(p.ranges)): used length \(usedLength), expected \(p.expectedUsed)" }
        switch p.kind {
        case .read:
            let r = p.ranges[0]
            for i in 0..<r.count {
                let sector = r.sector + i
                switch generation(in: slab, at: VirtioBlock.headerSize + i * sectorSize, sector: sector) {
                case let .failure(e): return "read \(describe(p.ranges)): \(e)"
                case let .success(g) where !allowed(sector).contains(g):
                    return "read \(describe(p.ranges)): sector \(sector) holds generation \(g), the model allows \(allowed(sector).sorted())"
                default: break
                }
            }
            bytesVerified += r.count * sectorSize
        case .write:
            for s in sectors(p.ranges) { current[s] = p.generation; alternatives[s] = nil }
        case .writeZeroes:
            for s in sectors(p.ranges) { current[s] = 0; alternatives[s] = nil }
        case .discard:
            // A discard is a hint: a sector reads as before or as zeroes.
            for s in sectors(p.ranges) { alternatives[s] = allowed(s).union([0]); current[s] = 0 }
        case .getID:
            let id = Array(slab[VirtioBlock.headerSize..<VirtioBlock.headerSize + VirtioBlock.idLength])
            let expected = Array(Self.serial.utf8) + [UInt8](repeating: 0, count: VirtioBlock.idLength - Self.serial.utf8.count)
            guard id == expected else { return "GET_ID returned \(id)" }
        case .flush:
            break
        }
        return nil
    }

    func abandon(_ tag: Int) {
        guard let p = pending.removeValue(forKey: tag) else { return }
        release(p)
        switch p.kind {
        case .write: for s in sectors(p.ranges) { alternatives[s] = allowed(s).union([p.generation]) }
        case .writeZeroes, .discard: for s in sectors(p.ranges) { alternatives[s] = allowed(s).union([0]) }
        case .read, .flush, .getID: break
        }
    }

    private func release(_ p: Pending) {
        if p.kind == .read { mark(p.ranges, writing: false, on: false) }
        if [.write, .discard, .writeZeroes].contains(p.kind) { mark(p.ranges, writing: true, on: false) }
    }

    private func sectors(_ ranges: [(sector: Int, count: Int)]) -> [Int] { ranges.flatMap { $0.sector..<$0.sector + $0.count } }
    private func describe(_ ranges: [(sector: Int, count: Int)]) -> String { ranges.map { "\($0.sector)+\($0.count)" }.joined(separator: ",") }

    // MARK: Control plane

    /// The config space says what the daemon was started with.
    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String? {
        guard setup.protocolFeatures.contains(.config) else { return nil }
        let config = try frontend.getConfig(offset: 0, count: VirtioBlock.ConfigOffset.end).data
        guard config.count == VirtioBlock.ConfigOffset.end else { return "GET_CONFIG returned \(config.count) bytes" }
        func value<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
            config.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        typealias O = VirtioBlock.ConfigOffset
        if value(O.capacity, as: UInt64.self) != UInt64(Self.sectors) { return "config capacity \(value(O.capacity, as: UInt64.self))" }
        if value(O.numQueues, as: UInt16.self) != UInt16(Self.queues) { return "config num_queues \(value(O.numQueues, as: UInt16.self))" }
        if value(O.blockSize, as: UInt32.self) != UInt32(sectorSize) { return "config blk_size \(value(O.blockSize, as: UInt32.self))" }
        return nil
    }
}
