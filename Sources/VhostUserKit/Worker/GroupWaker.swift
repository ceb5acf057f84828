/// Wakes a queue group's worker from any thread (a host-side reader, an I/O thread): the group's
/// handler then gets `GroupEvent.wake` on its worker. Wake-ups coalesce: several before the worker
/// runs make one event. Waking a group that has stopped does nothing.
public final class GroupWaker: Sendable {
    let event: EventFD

    init(event: EventFD) { self.event = event }

    public func wake() { event.signal() }
}
