import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The guests of one group, which may connect to each other (VM-to-VM: what the kernel's vhost-vsock
/// cannot do). Each guest's device serves its own queues on its own worker; a connection between two
/// guests is a socket pair whose ends the two devices treat like any host socket, so credit, shutdown
/// and reset work the same way on either side. A `Message` carries the other end to the peer (and
/// its acceptance back) through the peer's inbox and group waker.
public final class VsockHub: Sendable {
    enum Message {
        /// Guest `from` (port `fromPort`) asks for guest port `toPort` of the receiving guest; `socket`
        /// is the receiving side's end of the pair.
        case connect(socket: OwnedDescriptor, from: UInt64, fromPort: UInt32, toPort: UInt32, type: VirtioVsock.SocketType)
        /// The receiving guest's connection `key` was accepted by the peer guest.
        case accepted(ConnectionKey)
    }

    final class Member: Sendable {
        let inbox = Locked<[Message]>([])
        let waker = Locked<GroupWaker?>(nil)
    }

    private let members = Locked<[UInt64: Member]>([:])

    public init() {}

    /// Adds a guest; false when its CID is taken.
    func join(_ cid: UInt64) -> Member? {
        members.withLock { table in
            guard table[cid] == nil else { return nil }
            let member = Member()
            table[cid] = member
            return member
        }
    }

    /// Hands `message` to guest `cid` while its queues run; false when it is unknown or not running
    /// (the message, and the socket in it, is then dropped: the sender sees its end hang up).
    func send(_ message: Message, to cid: UInt64) -> Bool {
        guard let member = members.withLock({ $0[cid] }) else { return false }
        guard let waker = member.waker.withLock({ $0 }) else { return false }
        member.inbox.withLock { $0.append(message) }
        waker.wake()
        return true
    }

    /// Whether guest `cid` is in the group.
    func contains(_ cid: UInt64) -> Bool { members.withLock { $0[cid] != nil } }
}
