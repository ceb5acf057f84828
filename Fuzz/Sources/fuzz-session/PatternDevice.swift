import VhostUserKit

/// An rng-like device for the session fuzzer: it fills every writable buffer with a byte pattern.
/// Variants add a second queue (alone or in one queue group with the first), a writable config space
/// and inflight tracking, so that every request of the protocol has something to act on.
final class PatternDevice: VhostUserDevice {
    let queueCount: Int
    let configSize: Int
    let extraProtocolFeatures: ProtocolFeatures

    let queueGroups: [[Int]]

    init(queues: Int, withConfigAndInflight: Bool, grouped: Bool = false) {
        queueCount = queues
        queueGroups = grouped ? [Array(0..<queues)] : (0..<queues).map { [$0] }
        configSize = withConfigAndInflight ? 16 : 0
        extraProtocolFeatures = withConfigAndInflight ? [.inflightShmfd] : []
    }

    var virtioDeviceID: UInt32 { 4 }
    var deviceFeatures: UInt64 { 1 << 3 }
    var maxQueueSize: Int { 1024 }

    func writeConfig(offset: Int, bytes: [UInt8]) throws {}

    func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler { Filler() }

    final class Filler: QueueHandler {
        func process(_ queue: Virtqueue) -> ProcessResult {
            while let chain = queue.nextChain() {
                var writer = chain.writer()
                let n = writer.fill(upTo: chain.writableLength) { piece in
                    for i in 0..<piece.count { piece[i] = UInt8(truncatingIfNeeded: i &* 7) }
                    return piece.count
                }
                queue.complete(chain, written: n)
            }
            return .done
        }
    }
}
