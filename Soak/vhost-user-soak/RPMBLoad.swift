import Crypto
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-rpmb over an image the soak provisions with its own key (`--create --key-file`):
/// authenticated writes (with and without a trailing RESULT_READ), multi-block reads, write-counter
/// reads and RESULT_READs, mixed with malformed frames (bad MAC, stale counter, addresses and block
/// counts out of range, unknown types, partial frames, a second PROGRAM_KEY, no room for the response).
/// The soak computes and checks every MAC itself (HMAC-SHA256 from swift-crypto, not the device's
/// code), and keeps a model of the device: the write counter after every submitted write and the
/// generation each block holds (stamped data, as BlockLoad's sectors), so every response is checked:
/// result, counter, nonce, address, data. The device serves its queue in ring order, so the model
/// predicts each request's outcome from the requests submitted before it. A write given up in flight
/// may or may not have happened: the counter is then read back before anything else, and it says
/// exactly which of the given-up writes the image holds (their blocks are checked by later reads).
final class RPMBLoad: LoadProfile {
    static let name = "rpmb"

    static let capacityUnits = 2  // 256 KiB: 1024 blocks
    static let blocks = capacityUnits * 512
    static let maxWriteBlocks = 8
    static let maxReadBlocks = 16
    static let frame = 512
    static let blockSize = 256
    private static let magic: UInt64 = 0x5eed_4b3b << 32

    /// Frame field offsets (JESD84-B51 6.6.22; big-endian fields).
    enum Field {
        static let mac = 196, data = 228, nonce = 484, counter = 500, address = 504, blockCount = 506, result = 508, type = 510
    }
    enum Request: UInt16 { case programKey = 1, getWriteCounter, dataWrite, dataRead, resultRead }
    enum Result: UInt16 { case ok = 0, generalFailure, authenticationFailure, counterFailure, addressFailure, writeFailure }

    private enum Kind: String { case write, read, counter, resultRead, badMAC, staleCounter, writeOutOfRange, readOutOfRange,
                                     unknownType, partialFrame, tooManyBlocks, programKeyAgain, noRoom }
    /// What a write-type request (PROGRAM_KEY, DATA_WRITE) leaves for RESULT_READ.
    private struct WriteOutcome { var type: Request; var result: Result; var counter: UInt32; var address: Int }
    private struct Pending {
        var kind: Kind
        var address = 0, count = 0
        var generation: UInt32 = 0
        var nonce: [UInt8] = []
        /// The counter the write carries (writes) or the device's counter when it is served (others).
        var counter: UInt32 = 0
        var expected: WriteOutcome?
        var responseOffset = 0
        var expectedUsed = 0
    }

    let image: String
    let keyFile: String
    let key: [UInt8]
    private let symmetric: SymmetricKey
    /// The device's write counter once every request submitted so far is served; nil while a write
    /// given up in flight leaves it unknown.
    private var counter: UInt32? = 0
    /// Writes given up in flight that would have succeeded: applied exactly when the counter moved past theirs.
    private var givenUp: [Pending] = []
    private var generation = [UInt32](repeating: 0, count: RPMBLoad.blocks)
    private var readers = [UInt16](repeating: 0, count: RPMBLoad.blocks)
    private var writing = [Bool](repeating: false, count: RPMBLoad.blocks)
    /// The outcome of the last write-type request submitted (what a RESULT_READ returns); nil when unknown.
    private var lastOutcome: WriteOutcome?
    private var pending: [Int: Pending] = [:]
    private var nextTag = 0
    private var nextGeneration: UInt32 = 1
    private(set) var bytesVerified = 0

    init(files: String) throws {
        image = "\(files)/rpmb.img"
        keyFile = "\(files)/key"
        var generator = SystemRandomNumberGenerator()
        key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        symmetric = SymmetricKey(data: key)
        let fd = open(keyFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SoakError("cannot create \(keyFile): \(SystemError.describe(errno))") }
        defer { close(fd) }
        guard key.withUnsafeBytes({ write(fd, $0.baseAddress, 32) }) == 32 else {
            throw SoakError("cannot write \(keyFile): \(SystemError.describe(errno))")
        }
    }

    /// The image, with the soak's key programmed.
    func prepare(binaries: String) throws {
        let pid = try spawnInOwnGroup(["\(binaries)/vhost-user-rpmb", "--create", "--image", image,
                                       "--capacity", "\(Self.capacityUnits * 128)K", "--key-file", keyFile]) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard exitCode(fromWaitStatus: status) == 0 else {
            throw SoakError("vhost-user-rpmb --create exited with status \(exitCode(fromWaitStatus: status))")
        }
    }

    var executable: String { "vhost-user-rpmb" }
    var arguments: [String] { ["--image", image, "--max-write-blocks", String(Self.maxWriteBlocks), "--max-read-blocks", String(Self.maxReadBlocks)] }
    var maxQueues: Int { 1 }
    var maxQueueSize: Int { 256 }
    var slabBytes: Int { (Self.maxWriteBlocks + 2) * Self.frame + (Self.maxReadBlocks + 1) * Self.frame }

    // MARK: Making requests

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        guard let current = counter else {
            // Only the counter read that resolves the given-up writes, and one at a time.
            guard !pending.values.contains(where: { $0.kind == .counter }) else { return nil }
            return counterRead(slab, counter: 0, random: &random)
        }
        let kind = random.weighted([(Kind.write, 34), (.read, 30), (.counter, 10), (.resultRead, 6), (.badMAC, 2), (.staleCounter, 2),
                                    (.writeOutOfRange, 2), (.readOutOfRange, 2), (.unknownType, 2), (.partialFrame, 2),
                                    (.tooManyBlocks, 2), (.programKeyAgain, 2), (.noRoom, 2)])
        for i in 0..<slab.count { slab[i] = 0 }
        switch kind {
        case .write, .badMAC, .staleCounter, .writeOutOfRange:
            let count = Int.random(in: 1...Self.maxWriteBlocks, using: &random)
            var address: Int
            var p = Pending(kind: kind, count: count, counter: current)
            if kind == .writeOutOfRange {
                address = Int.random(in: (Self.blocks - count + 1)...Int(UInt16.max), using: &random)
            } else {
                guard let free = freeRange(count: count, forWrite: true, random: &random) else { return nil }
                address = free
            }
            if kind == .staleCounter {
                guard current > 0 else { return nil }
                p.counter = current - UInt32.random(in: 1...min(current, 3), using: &random)
            }
            p.address = address
            let result: Result = [.write: .ok, .badMAC: .authenticationFailure, .staleCounter: .counterFailure,
                                  .writeOutOfRange: .addressFailure][kind]!
            if result == .ok { p.generation = takeGeneration() }
            for i in 0..<count {
                let f = slab.baseAddress! + i * Self.frame
                if result == .ok { stamp(f + Field.data, block: address + i, generation: p.generation) } else { fill(f + Field.data, random: &random) }
                set32(f, Field.counter, p.counter)
                set16(f, Field.address, UInt16(truncatingIfNeeded: address))
                set16(f, Field.blockCount, UInt16(count))
                set16(f, Field.type, Request.dataWrite.rawValue)
            }
            sign(slab.baseAddress!, count: count)
            if kind == .badMAC { slab[(count - 1) * Self.frame + Field.mac + Int.random(in: 0..<32, using: &random)] ^= 0x40 }
            if result == .ok {
                counter = current + 1
                mark(address, count, writing: true, on: true)
            }
            p.expected = WriteOutcome(type: .dataWrite, result: result, counter: counter!, address: address & 0xffff)
            lastOutcome = p.expected
            return finish(p, requestFrames: count, trailingResultRead: kind != .write || random.chance(70), slab, random: &random)

        case .programKeyAgain:
            let f = slab.baseAddress!
            fill(f + Field.mac, random: &random, bytes: 32)
            set16(f, Field.blockCount, 1)
            set16(f, Field.type, Request.programKey.rawValue)
            var p = Pending(kind: kind, counter: current)
            p.expected = WriteOutcome(type: .programKey, result: .writeFailure, counter: 0, address: 0)
            lastOutcome = p.expected
            return finish(p, requestFrames: 1, trailingResultRead: true, slab, random: &random)

        case .read, .readOutOfRange, .tooManyBlocks, .noRoom:
            var count = Int.random(in: 1...Self.maxReadBlocks, using: &random)
            var address: Int
            if kind == .readOutOfRange {
                address = Int.random(in: (Self.blocks - count + 1)...Int(UInt16.max), using: &random)
            } else {
                if kind == .tooManyBlocks { count = Int.random(in: Self.maxReadBlocks + 1...Int(UInt16.max), using: &random) }
                if kind == .noRoom { count = Int.random(in: 2...Self.maxReadBlocks, using: &random) }
                guard let free = freeRange(count: min(count, Self.maxReadBlocks), forWrite: false, random: &random) else { return nil }
                address = free
            }
            let p = Pending(kind: kind, address: address, count: count, nonce: nonce(&random), counter: current)
            let f = slab.baseAddress!
            p.nonce.withUnsafeBytes { (f + Field.nonce).copyMemory(from: $0.baseAddress!, byteCount: 16) }
            set16(f, Field.address, UInt16(address))
            set16(f, Field.blockCount, UInt16(count))
            set16(f, Field.type, Request.dataRead.rawValue)
            if kind == .read { mark(address, count, writing: false, on: true) }
            // No room for all the frames: a GENERAL_FAILURE frame; else the device checks the address.
            let room = kind == .noRoom ? Int.random(in: 1..<count, using: &random) : kind == .tooManyBlocks ? 1 : count
            return finish(p, requestFrames: 1, responseFrames: room, slab, random: &random)

        case .counter:
            return counterRead(slab, counter: current, random: &random)

        case .resultRead:
            guard lastOutcome != nil else { return nil }
            set16(slab.baseAddress!, Field.blockCount, 1)
            set16(slab.baseAddress!, Field.type, Request.resultRead.rawValue)
            var p = Pending(kind: kind, counter: current)
            p.expected = lastOutcome
            return finish(p, requestFrames: 1, responseFrames: 1, slab, random: &random)

        case .unknownType:
            set16(slab.baseAddress!, Field.type, UInt16.random(in: 6...UInt16.max, using: &random))
            return finish(Pending(kind: kind, counter: current), requestFrames: 1, responseFrames: 1, slab, random: &random)

        case .partialFrame:
            // Not a whole number of frames: one GENERAL_FAILURE frame, nothing done.
            let p = Pending(kind: kind, counter: current, responseOffset: 2 * Self.frame, expectedUsed: Self.frame)
            var length = Int.random(in: 1...(2 * Self.frame - 2), using: &random)
            if length >= Self.frame { length += 1 }
            return tagged(p, [SlabBuffer(offset: 0, length: length, writable: false),
                              SlabBuffer(offset: p.responseOffset, length: Self.frame, writable: true)], slab)
        }
    }

    private func counterRead(_ slab: UnsafeMutableRawBufferPointer, counter: UInt32, random: inout SoakRandom) -> LoadRequest {
        for i in 0..<2 * Self.frame { slab[i] = 0 }
        let p = Pending(kind: .counter, nonce: nonce(&random), counter: counter)
        let f = slab.baseAddress!
        p.nonce.withUnsafeBytes { (f + Field.nonce).copyMemory(from: $0.baseAddress!, byteCount: 16) }
        set16(f, Field.blockCount, 1)
        set16(f, Field.type, Request.getWriteCounter.rawValue)
        return finish(p, requestFrames: 1, responseFrames: 1, slab, random: &random)
    }

    /// Lays out the chain: the request frames (and a trailing RESULT_READ) readable, in one or two
    /// buffers, then room for the response frames in one to three, poisoned.
    private func finish(_ pending: Pending, requestFrames: Int, trailingResultRead: Bool = false, responseFrames: Int? = nil,
                        _ slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest {
        var p = pending
        var frames = requestFrames
        if trailingResultRead {
            let f = slab.baseAddress! + frames * Self.frame
            set16(f, Field.blockCount, 1)
            set16(f, Field.type, Request.resultRead.rawValue)
            frames += 1
        }
        let room = responseFrames ?? (trailingResultRead ? 1 : 0)
        p.responseOffset = frames * Self.frame
        p.expectedUsed = (p.kind == .read ? p.count : min(room, 1)) * Self.frame
        var buffers = pieces(0, frames * Self.frame, random.chance(30) ? 2 : 1, writable: false, random: &random)
        if room > 0 {
            buffers += pieces(p.responseOffset, room * Self.frame, Int.random(in: 1...3, using: &random), writable: true, random: &random)
        }
        return tagged(p, buffers, slab)
    }

    private func tagged(_ p: Pending, _ buffers: [SlabBuffer], _ slab: UnsafeMutableRawBufferPointer) -> LoadRequest {
        for i in p.responseOffset..<slab.count { slab[i] = 0xaa }
        nextTag += 1
        pending[nextTag] = p
        return LoadRequest(buffers: buffers, tag: nextTag)
    }

    /// `length` bytes from `start` in at most `count` buffers cut at random points.
    private func pieces(_ start: Int, _ length: Int, _ count: Int, writable: Bool, random: inout SoakRandom) -> [SlabBuffer] {
        var cuts = Set((1..<count).map { _ in Int.random(in: 1..<length, using: &random) })
        cuts.insert(length)
        var from = 0
        return cuts.sorted().map { end in
            defer { from = end }
            return SlabBuffer(offset: start + from, length: end - from, writable: writable)
        }
    }

    private func takeGeneration() -> UInt32 {
        defer { nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1 }
        return nextGeneration
    }

    private func freeRange(count: Int, forWrite: Bool, random: inout SoakRandom) -> Int? {
        for _ in 0..<8 {
            let start = Int.random(in: 0...(Self.blocks - count), using: &random)
            if (start..<start + count).allSatisfy({ !writing[$0] && (!forWrite || readers[$0] == 0) }) { return start }
        }
        return nil
    }

    private func mark(_ address: Int, _ count: Int, writing isWrite: Bool, on: Bool) {
        for b in address..<address + count {
            if isWrite { writing[b] = on } else { readers[b] = on ? readers[b] + 1 : readers[b] - 1 }
        }
    }

    // MARK: Frames

    private func set16(_ f: UnsafeMutableRawPointer, _ at: Int, _ v: UInt16) { f.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt16.self) }
    private func set32(_ f: UnsafeMutableRawPointer, _ at: Int, _ v: UInt32) { f.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt32.self) }
    private func get16(_ f: UnsafeRawPointer, _ at: Int) -> UInt16 { UInt16(bigEndian: f.loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    private func get32(_ f: UnsafeRawPointer, _ at: Int) -> UInt32 { UInt32(bigEndian: f.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }

    private func nonce(_ random: inout SoakRandom) -> [UInt8] { (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) } }

    private func fill(_ at: UnsafeMutableRawPointer, random: inout SoakRandom, bytes: Int = blockSize) {
        for i in 0..<bytes { at.storeBytes(of: UInt8.random(in: 0...255, using: &random), toByteOffset: i, as: UInt8.self) }
    }

    /// HMAC-SHA256 over bytes 228..<512 of `count` frames.
    private func mac(_ frames: UnsafeRawPointer, count: Int) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: symmetric)
        for i in 0..<count { hmac.update(data: UnsafeRawBufferPointer(start: frames + i * Self.frame + Field.data, count: Self.frame - Field.data)) }
        return Array(hmac.finalize())
    }

    private func sign(_ frames: UnsafeMutableRawPointer, count: Int) {
        let code = mac(frames, count: count)
        code.withUnsafeBytes { (frames + (count - 1) * Self.frame + Field.mac).copyMemory(from: $0.baseAddress!, byteCount: 32) }
    }

    private func signed(_ frames: UnsafeRawPointer, count: Int) -> Bool {
        mac(frames, count: count).elementsEqual(UnsafeRawBufferPointer(start: frames + (count - 1) * Self.frame + Field.mac, count: 32))
    }

    private func word(_ block: Int, _ generation: UInt32, _ i: Int) -> UInt64 {
        i == 0 ? Self.magic ^ UInt64(block) : i == 1 ? UInt64(generation) : (UInt64(block) &* 0x9e37_79b9_7f4a_7c15) ^ (UInt64(generation) << 32 | UInt64(i))
    }

    private func stamp(_ at: UnsafeMutableRawPointer, block: Int, generation: UInt32) {
        for i in 0..<Self.blockSize / 8 { at.storeBytes(of: word(block, generation, i), toByteOffset: i * 8, as: UInt64.self) }
    }

    /// What is wrong with block `block`'s data at `at`, given the generation the model says it holds.
    private func checkBlock(_ at: UnsafeRawPointer, block: Int) -> String? {
        let g = generation[block]
        for i in 0..<Self.blockSize / 8 {
            let found = at.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            guard found != (g == 0 ? 0 : word(block, g, i)) else { continue }
            let held = at.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            return "block \(block) differs at word \(i) from generation \(g) (it holds generation \(held))"
        }
        return nil
    }

    // MARK: Completions

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let p = pending.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        release(p)
        let what = "\(p.kind) of \(p.count) at \(p.address)"
        guard usedLength == p.expectedUsed else { return "\(what): used length \(usedLength), expected \(p.expectedUsed)" }
        guard usedLength > 0 else {
            if p.kind == .write { applied(p) }
            return nil
        }
        let r = UnsafeRawPointer(slab.baseAddress! + p.responseOffset)
        let type = get16(r, Field.type), result = get16(r, Field.result)
        func expect(_ request: Request?, _ wanted: Result, counter: UInt32? = nil, nonce: Bool = false, frames: Int = 1) -> String? {
            if type != request.map({ $0.rawValue << 8 }) ?? 0 { return "\(what): response type 0x\(String(type, radix: 16))" }
            if result != wanted.rawValue { return "\(what): result \(result), expected \(wanted)" }
            if let counter, get32(r, Field.counter) != counter { return "\(what): counter \(get32(r, Field.counter)), expected \(counter)" }
            if nonce, !p.nonce.elementsEqual(UnsafeRawBufferPointer(start: r + Field.nonce, count: 16)) { return "\(what): nonce not echoed" }
            if request != nil || wanted != .generalFailure || p.kind == .unknownType, !signed(r, count: frames) { return "\(what): bad MAC" }
            return nil
        }
        switch p.kind {
        case .write, .badMAC, .staleCounter, .writeOutOfRange, .programKeyAgain, .resultRead:
            let e = p.expected!
            if let problem = expect(e.type, e.result, counter: e.type == .dataWrite ? e.counter : nil) { return problem }
            if e.type == .dataWrite, Int(get16(r, Field.address)) != e.address { return "\(what): response address \(get16(r, Field.address))" }
            if p.kind == .write { applied(p) }
        case .counter:
            if let problem = expect(.getWriteCounter, .ok, nonce: true) { return problem }
            let found = get32(r, Field.counter)
            if counter == nil { return resolve(found) }
            if found != p.counter { return "GET_WRITE_COUNTER: \(found), expected \(p.counter)" }
        case .read:
            for i in 0..<p.count {
                let f = r + i * Self.frame
                if get16(f, Field.type) != Request.dataRead.rawValue << 8 || get16(f, Field.result) != 0
                    || Int(get16(f, Field.address)) != p.address || Int(get16(f, Field.blockCount)) != p.count
                    || !p.nonce.elementsEqual(UnsafeRawBufferPointer(start: f + Field.nonce, count: 16)) {
                    return "\(what): frame \(i) has type 0x\(String(get16(f, Field.type), radix: 16)) result \(get16(f, Field.result)) address \(get16(f, Field.address)) count \(get16(f, Field.blockCount)) or another nonce"
                }
                if let problem = checkBlock(f + Field.data, block: p.address + i) { return "\(what): \(problem)" }
            }
            if !signed(r, count: p.count) { return "\(what): bad MAC" }
            bytesVerified += p.count * Self.blockSize
        case .readOutOfRange:
            return expect(.dataRead, .addressFailure, nonce: true)
        case .tooManyBlocks, .noRoom:
            return expect(.dataRead, .generalFailure, nonce: true)
        case .unknownType:
            return expect(nil, .generalFailure)
        case .partialFrame:
            return expect(nil, .generalFailure)
        }
        return nil
    }

    /// A write the device carried out: its blocks hold its generation.
    private func applied(_ p: Pending) {
        for b in p.address..<p.address + p.count { generation[b] = p.generation }
    }

    /// The counter read after writes were given up: the ones whose counter it passed are in the image.
    private func resolve(_ found: UInt32) -> String? {
        let lowest = givenUp.map(\.counter).min() ?? found
        let highest = givenUp.map { $0.counter + 1 }.max() ?? found
        defer { givenUp = []; counter = found }
        guard (lowest...highest).contains(found) else {
            return "after writes with counters \(lowest)..<\(highest) were given up, the counter reads \(found)"
        }
        for w in givenUp.sorted(by: { $0.counter < $1.counter }) where w.counter < found { applied(w) }
        return nil
    }

    func abandon(_ tag: Int) {
        guard let p = pending.removeValue(forKey: tag) else { return }
        release(p)
        if p.expected != nil { lastOutcome = nil }
        guard p.kind == .write else { return }
        givenUp.append(p)
        counter = nil
    }

    private func release(_ p: Pending) {
        if p.kind == .read { mark(p.address, p.count, writing: false, on: false) }
        if p.kind == .write { mark(p.address, p.count, writing: true, on: false) }
    }
}
