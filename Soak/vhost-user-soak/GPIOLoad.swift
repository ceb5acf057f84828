/// vhost-user-gpio (simulated chip, requestq): random requests of every type, on lines in range, out
/// of range and busy, with valid and invalid values and response sizes. Line state is the daemon's and
/// a disconnect resets it, so each completion is checked against what holds in any state: refusals
/// for what is malformed, OK with a value in range for what is well formed, the names block byte for
/// byte, and the response length the driver expects.
final class GPIOLoad: LoadProfile {
    static let name = "gpio"
    static let lineCount = 8, busyLine = 7
    static let names = ["led", "button", "a", "b"]
    /// The GET_NAMES response: OK, then every line's name NUL-terminated (four unnamed lines).
    static let namesResponse: [UInt8] = [0] + names.flatMap { Array($0.utf8) + [0] } + [0, 0, 0, 0]

    private enum Expect {
        /// ERR and a zero value (or the status alone in a one-byte buffer).
        case error
        /// OK with a value below `limit`.
        case ok(below: UInt8)
        /// OK or ERR (depends on state: SET_IRQ_TYPE on a line that may be an output).
        case either
        case names
    }
    private var expected: [Int: (Expect, responseSize: Int, request: String)] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0

    init(files: String) {}

    var executable: String { "vhost-user-gpio" }
    var arguments: [String] {
        ["--lines", "\(Self.lineCount)", "--line-names", Self.names.joined(separator: ","), "--loopback", "0-1", "--busy", "\(Self.busyLine)"]
    }
    var maxQueues: Int { 1 }  // the requestq: eventq buffers are held until a line fires
    var maxQueueSize: Int { 256 }
    var slabBytes: Int { 4096 }

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        let type = UInt16(random.weighted([(Int.random(in: 1...6, using: &random), 9), (Int.random(in: 0...0xffff, using: &random), 1)]))
        let line = UInt16(random.weighted([(Int.random(in: 0..<Self.lineCount, using: &random), 8),
                                           (Int.random(in: Self.lineCount...0xffff, using: &random), 1)]))
        let value = UInt32(random.weighted([(Int.random(in: 0...4, using: &random), 8), (Int.random(in: 0...Int(UInt32.max), using: &random), 1)]))
        let header = UInt64(type) | UInt64(line) << 16 | UInt64(value) << 32
        slab.storeBytes(of: header.littleEndian, toByteOffset: 0, as: UInt64.self)
        let wanted = type == 1 ? Self.namesResponse.count : 2
        let responseSize = random.weighted([(wanted, 8), (1, 1), (wanted + 8, 1)])
        for i in 0..<responseSize { slab[64 + i] = 0xee }
        nextTag += 1
        expected[nextTag] = (expectation(type: type, line: Int(line), value: value), responseSize, "type \(type) line \(line) value \(value)")
        return LoadRequest(buffers: [SlabBuffer(offset: 0, length: 8, writable: false),
                                     SlabBuffer(offset: 64, length: responseSize, writable: true)], tag: nextTag)
    }

    private func expectation(type: UInt16, line: Int, value: UInt32) -> Expect {
        if type == 1 { return .names }
        guard (2...6).contains(type), line < Self.lineCount, line != Self.busyLine else { return .error }
        switch type {
        case 2: return .ok(below: 3)
        case 3: return value <= 2 ? .ok(below: 1) : .error
        case 4: return .ok(below: 2)
        case 5: return value <= 1 ? .ok(below: 1) : .error
        default: return [0, 1, 2, 3, 4, 8].contains(value) ? .either : .error
        }
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let (expect, responseSize, request) = expected.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        let response = Array(slab[64..<64 + responseSize])
        let status = response[0]
        func length(_ n: Int) -> String? { usedLength == UInt32(n) ? nil : "used length \(usedLength), not \(n), for \(expect)" }
        switch expect {
        case .names where responseSize >= Self.namesResponse.count:
            if let wrong = length(Self.namesResponse.count) { return wrong }
            guard Array(response.prefix(Self.namesResponse.count)) == Self.namesResponse else { return "GET_NAMES returned \(response)" }
        case .names, .error:
            if let wrong = length(min(2, responseSize)) { return wrong }
            guard status == 1, responseSize == 1 || response[1] == 0 else { return "\(request) got \(response.prefix(2))" }
        case let .ok(limit):
            if responseSize == 1 { return length(1) ?? (status == 1 ? nil : "a one-byte response got status \(status)") }
            if let wrong = length(2) { return wrong }
            guard status == 0, response[1] < limit else { return "\(request) got \(response.prefix(2))" }
        case .either:
            if let wrong = length(min(2, responseSize)) { return wrong }
            guard status <= 1 else { return "SET_IRQ_TYPE got status \(status)" }
        }
        bytesVerified += Int(usedLength)
        return nil
    }

    func abandon(_ tag: Int) { expected[tag] = nil }
}
