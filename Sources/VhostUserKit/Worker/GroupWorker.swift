/// The thread that runs one queue group: the handler's start, turns until the group is asked to stop,
/// then its finish. The control thread starts and stops it; nothing else touches a running group.
final class GroupWorker {
    let group: QueueGroup
    private var thread: PosixThread?

    init(group: QueueGroup) { self.group = group }

    /// Starts the thread, named after the group's first queue (`vhu-queue-N`).
    func start() {
        thread = PosixThread(name: "vhu-queue-\(group.queues[0].index)") { [group] in
            group.start()
            while !group.isStopping { group.turn() }
            group.finish()
        }
    }

    /// A kick that came in-band (VHOST_USER_VRING_KICK) for member queue `index`.
    func notify(queue index: Int) { group.queue(index)?.completionPort.wake.signal() }

    /// Stops the thread after the request in hand and returns once it has exited; the queues' final
    /// indices are then in `group.queues`.
    func stop() {
        group.requestStop()
        thread?.join()
        thread = nil
    }
}
