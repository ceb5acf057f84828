import VhostUserKit

/// What a queue's worker does with one fuzzed ring: `device`'s group handler for `queue` in a group
/// of its own, up to four turns (fewer once the ring is broken or empty), then the stop.
public func runQueueGroup(_ device: any VhostUserDevice, _ queue: Virtqueue, features: UInt64) {
    let handler = device.makeGroupHandler(queues: [queue.index], features: features)
    guard let group = try? QueueGroup(queues: [queue], handler: handler, logger: quietLogger) else {
        fatalError("cannot make a queue group")
    }
    group.start()
    for _ in 0..<4 {
        group.turn(timeoutMilliseconds: 0)
        if queue.brokenReason != nil || !queue.hasAvailable { break }
    }
    group.requestStop()
    group.finish()
}
