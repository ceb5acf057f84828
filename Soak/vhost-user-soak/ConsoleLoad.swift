import VhostUserTesting

/// vhost-user-console: guest output of random sizes on port 0 (the console, queue 1), split over one
/// to four readable buffers, logged by the daemon to a file; the receive queue (0) gets no requests,
/// as a log file gives no input. The daemon must return every chain with length 0, and the config
/// space must say one port.
final class ConsoleLoad: LoadProfile {
    static let name = "console"

    private var lengths: [Int: Int] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0
    private let log: String

    init(files: String) { log = "\(files)/console.log" }

    var executable: String { "vhost-user-console" }
    var arguments: [String] { ["--port", "name=,backend=file:\(log)", "--buffer-bytes", "65536"] }
    var maxQueues: Int { 2 }
    var maxQueueSize: Int { 1024 }
    var slabBytes: Int { 16 << 10 }

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        guard queue == 1 else { return nil }
        let length = random.weighted([(Int.random(in: 1...80, using: &random), 5), (Int.random(in: 81...slabBytes, using: &random), 2)])
        for i in 0..<length { slab[i] = UInt8(truncatingIfNeeded: i &* 7 &+ nextTag) }
        nextTag += 1
        lengths[nextTag] = length
        let pieces = min(length, Int.random(in: 1...4, using: &random))
        let step = length / pieces
        let buffers = (0..<pieces).map { i in
            SlabBuffer(offset: i * step, length: i == pieces - 1 ? length - i * step : step, writable: false)
        }
        return LoadRequest(buffers: buffers, tag: nextTag)
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let length = lengths.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        guard usedLength == 0 else { return "used length \(usedLength) for guest output (the device writes nothing back)" }
        bytesVerified += length
        return nil
    }

    func abandon(_ tag: Int) { lengths[tag] = nil }

    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String? {
        let config = try frontend.getConfig(offset: 0, count: 12).data
        guard config.count == 12, config[4] == 1, config[5...7] == [0, 0, 0] else { return "config space \(config): max_nr_ports is not 1" }
        return nil
    }
}
