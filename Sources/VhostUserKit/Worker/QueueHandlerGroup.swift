import Logging

/// A group handler made of one independent `QueueHandler` per member queue: how devices whose queues
/// share nothing (rng, blk) run on the group worker, one queue per worker or several on one.
public final class QueueHandlerGroup: GroupHandler {
    /// The handlers, by device queue index (nil for queues outside the group).
    private let handlers: [QueueHandler?]
    private let members: [(index: Int, handler: QueueHandler)]
    /// The handler of a group of one queue, the common case, called without a table lookup.
    private let only: QueueHandler?
    /// Which member queue each wake descriptor belongs to.
    private var owners: [Watch: Int] = [:]

    /// Serves `handlers`: each is paired with the device queue index it processes.
    public init(_ handlers: [(queue: Int, handler: QueueHandler)]) {
        var table = [QueueHandler?](repeating: nil, count: (handlers.map(\.queue).max() ?? -1) + 1)
        for (queue, handler) in handlers { table[queue] = handler }
        self.handlers = table
        self.members = handlers.map { ($0.queue, $0.handler) }
        only = handlers.count == 1 ? handlers[0].handler : nil
    }

    public func start(_ group: QueueGroup) {
        for (index, handler) in members {
            for fd in handler.wakeDescriptors {
                do {
                    owners[try group.watch(fd, for: .readable)] = index
                } catch {
                    group.logger.error("queue \(index): cannot watch descriptor \(fd): \(error)")
                }
            }
        }
    }

    public func process(_ queue: Virtqueue, in group: QueueGroup) -> ProcessResult {
        (only ?? handlers[queue.index]!).process(queue)
    }

    public func handle(_ event: GroupEvent, in group: QueueGroup) {
        if case let .ready(watch, _) = event, let index = owners[watch] { group.wakeQueue(index) }
    }

    public func stop(_ group: QueueGroup) {
        for queue in group.queues { handlers[queue.index]?.stop(queue) }
    }

    public var hasPendingWork: Bool {
        if let only { return only.hasPendingWork }
        return members.contains { $0.handler.hasPendingWork }
    }
}
