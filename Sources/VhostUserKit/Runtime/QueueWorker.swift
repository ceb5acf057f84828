import CVhostUser
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The thread that owns one running queue: it waits for kicks on the queue's own epoll set, lets the
/// device's handler process the ring, publishes and notifies once per batch. Queues share nothing,
/// so one queue's worker never waits for another's.
final class QueueWorker: @unchecked Sendable {
    let queue: Virtqueue
    let wake: EventFD
    private let handler: any QueueHandler
    private let kick: EventFD?
    private let pollNanoseconds: UInt64
    private let stopRequested = Atomic<Bool>(false)
    private var thread: PosixThread?

    /// How often a queue without a kick eventfd (bit 8 of SET_VRING_KICK: "poll the ring") is polled.
    static let noKickPollMilliseconds: Int32 = 1

    private static let kickToken: UInt64 = 0
    private static let wakeToken: UInt64 = 1
    private static let handlerToken: UInt64 = 2

    init(queue: Virtqueue, wake: EventFD, handler: any QueueHandler, kick: EventFD?, pollNanoseconds: UInt64) {
        self.queue = queue
        self.wake = wake
        self.handler = handler
        self.kick = kick
        self.pollNanoseconds = pollNanoseconds
    }

    func start() throws(SystemError) {
        let epoll = try Epoll()
        // Edge-triggered: the kick descriptor is the front-end's, and one that stays readable (a hung-up
        // pipe, a semaphore eventfd with a huge count) must not keep the worker awake.
        if let kick { try epoll.add(kick.rawValue, token: Self.kickToken, edgeTriggered: true) }
        try epoll.add(wake.rawValue, token: Self.wakeToken)
        for fd in handler.wakeDescriptors { try epoll.add(fd, token: Self.handlerToken) }
        thread = PosixThread(name: "vhu-queue-\(queue.index)") { [self] in run(epoll) }
    }

    /// A kick that came in-band (VHOST_USER_VRING_KICK) or any reason to look at the ring again.
    func notify() { wake.signal() }

    /// Stops the thread after its current pass and returns once it has exited; the queue's final
    /// indices are then in `queue`.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        queue.requestStop()
        wake.signal()
        thread?.join()
        thread = nil
    }

    private var stopping: Bool { stopRequested.load(ordering: .acquiring) }

    private func run(_ epoll: Epoll) {
        var spare: [UInt64] = []
        spare.reserveCapacity(64)
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 4) { tokens in
            while !stopping {
                let result = pass(&spare)
                if stopping { break }
                var timeout: Int32 = kick == nil ? Self.noKickPollMilliseconds : -1
                if case let .retry(ms) = result { timeout = timeout < 0 ? ms : min(ms, timeout) }
                let n = epoll.wait(into: tokens.baseAddress!, capacity: 4, timeoutMilliseconds: timeout)
                for i in 0..<n {
                    switch tokens[i] {
                    case Self.kickToken: kick?.drain()
                    case Self.wakeToken: wake.drain()
                    default: break  // the handler's own descriptor: it drains it in process
                    }
                }
            }
        }
        handler.stop(queue)
        queue.completionPort.drain(into: queue, spare: &spare)
        queue.publish()
    }

    /// Processes until the ring is empty (and stays empty through the adaptive polling window).
    private func pass(_ spare: inout [UInt64]) -> ProcessResult {
        while true {
            queue.disableNotifications()
            queue.completionPort.drain(into: queue, spare: &spare)
            let result = handler.process(queue)
            queue.checkMemory()
            queue.publish()
            if stopping { return .blocked }
            switch result {
            case .retry: return result
            case .blocked: _ = queue.enableNotifications(); return .blocked
            case .done: break
            }
            if pollNanoseconds > 0 && spinForWork() { continue }
            if !queue.enableNotifications() { return .done }
        }
    }

    /// Busy-polls the ring for up to `pollNanoseconds`: a cross-core wake-up costs tens of microseconds,
    /// so a busy queue is cheaper to poll briefly than to sleep on. Each round yields the CPU, so
    /// workers that share a core (more queues than cores) poll in turn instead of starving each other.
    private func spinForWork() -> Bool {
        let deadline = monotonicNanoseconds() &+ pollNanoseconds
        repeat {
            if queue.hasAvailable || handler.hasPendingWork { return true }
            if stopping { return false }
            sched_yield()
        } while monotonicNanoseconds() < deadline
        return false
    }
}
