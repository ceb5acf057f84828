/// vhost-user-rng: fill requests of random sizes, split over one to four writable buffers. Each buffer
/// is first filled with a word unique to the request; the daemon must report the whole chain written
/// and leave no aligned word of it untouched.
final class RNGLoad: LoadProfile {
    static let name = "rng"

    private var poison: [Int: (word: UInt64, length: Int)] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0

    init(files: String) {}

    var executable: String { "vhost-user-rng" }
    var arguments: [String] { [] }
    var maxQueues: Int { 1 }
    var maxQueueSize: Int { 1024 }
    var slabBytes: Int { 64 << 10 }

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        // Mostly small requests, as guests make them, and now and then a large one.
        let length = random.weighted([(Int.random(in: 1...64, using: &random), 3), (Int.random(in: 65...4096, using: &random), 5),
                                      (Int.random(in: 4097...slabBytes, using: &random), 2)])
        let word = random.next() | 1
        for i in 0..<(length + 7) / 8 where i * 8 + 8 <= slab.count {
            slab.storeBytes(of: word, toByteOffset: i * 8, as: UInt64.self)
        }
        nextTag += 1
        poison[nextTag] = (word, length)
        return LoadRequest(buffers: split(length, pieces: Int.random(in: 1...4, using: &random), random: &random), tag: nextTag)
    }

    /// `length` bytes cut at random points into at most `pieces` writable buffers.
    private func split(_ length: Int, pieces: Int, random: inout SoakRandom) -> [SlabBuffer] {
        var cuts = Set((1..<pieces).compactMap { _ in length > 1 ? Int.random(in: 1..<length, using: &random) : nil })
        cuts.insert(length)
        var start = 0
        return cuts.sorted().map { end in
            defer { start = end }
            return SlabBuffer(offset: start, length: end - start, writable: true)
        }
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let (word, length) = poison.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        guard usedLength == length else { return "used length \(usedLength) for a \(length)-byte request" }
        for i in 0..<length / 8 where slab.load(fromByteOffset: i * 8, as: UInt64.self) == word {
            return "bytes \(i * 8)..<\(i * 8 + 8) of a \(length)-byte request were not written"
        }
        bytesVerified += length
        return nil
    }

    func abandon(_ tag: Int) { poison[tag] = nil }
}
