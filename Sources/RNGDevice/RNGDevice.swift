import VhostUserKit

/// virtio-rng (virtio 1.2, 5.4): one request queue of device-writable buffers, filled with entropy.
public final class RNGDevice: VhostUserDevice {
    public static let virtioID: UInt32 = 4
    /// The most bytes one request is filled with. A driver may offer buffers of any size (a hostile one,
    /// an indirect table of descriptors each covering all of guest memory); a shorter fill is a valid
    /// answer (virtio 1.2, 5.4.6), and it bounds the work one request costs.
    public static let maxBytesPerRequest = 64 << 10

    public let source: OpenEntropySource
    public let sourceDescription: String
    /// Shared by every run of the queue, so reconnecting does not reset the rate budget.
    private let limiter: Locked<RateLimiter?>

    /// Opens `source` now, so a bad path fails at start-up rather than when the guest asks.
    public init(source: EntropySource = .defaultSource, rateLimit: RateLimit? = nil) throws(EntropySourceError) {
        self.source = try source.open()
        self.sourceDescription = source.description
        self.limiter = Locked(rateLimit.map(RateLimiter.init))
    }

    public var virtioDeviceID: UInt32 { Self.virtioID }
    public var deviceFeatures: UInt64 { 0 }
    public var queueCount: Int { 1 }
    public var maxQueueSize: Int { 1024 }

    public func makeQueueHandler(queue index: Int, features: UInt64) -> any QueueHandler {
        RequestQueue(device: self)
    }

    /// Fills each writable chain with entropy, within the rate budget.
    final class RequestQueue: QueueHandler {
        private let device: RNGDevice
        init(device: RNGDevice) { self.device = device }

        func process(_ queue: Virtqueue) -> ProcessResult {
            device.limiter.withLock { limiter in
                while queue.hasAvailable {
                    var budget = Int.max
                    if limiter != nil {
                        let now = monotonicNanoseconds()
                        budget = limiter!.available(now: now)
                        if budget <= 0 { return .retry(afterMilliseconds: limiter!.millisecondsUntilRefill(now: now)) }
                    }
                    guard let chain = queue.nextChain() else { break }
                    var writer = chain.writer()
                    let produced = writer.fill(upTo: min(budget, chain.writableLength, RNGDevice.maxBytesPerRequest)) {
                        device.source.read(into: $0)
                    }
                    limiter?.consume(produced)
                    queue.complete(chain, written: produced)
                }
                return .done
            }
        }
    }
}
