import CNBD
import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// What an NBD engine waits on, as one descriptor the queue worker watches: an epoll set holding the
/// connection's socket (readable and writable as libnbd wants next) and a timer for reconnect attempts
/// and deadlines. Readable whenever one of them is ready; level-triggered, so the engine must take
/// what is ready (let libnbd read or write, read the timer) or the worker is woken again at once.
final class NBDWaitSet {
    /// What the socket was found ready for.
    struct SocketReadiness {
        var readable = false, writable = false
        /// The peer hung up or the socket has an error.
        var hangUp = false
        var any: Bool { readable || writable || hangUp }
    }

    /// What `wait` found ready.
    struct Events {
        var socket = SocketReadiness()
        var timer = false
    }

    private static let socketToken: UInt64 = 1, timerToken: UInt64 = 2
    private let epoll: OwnedDescriptor
    private let timer: OwnedDescriptor
    private var socket: Int32 = -1
    private var interest: UInt32 = 0
    private var armedAt: UInt64 = 0
    private let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
    private let ready = UnsafeMutablePointer<UInt32>.allocate(capacity: 2)

    init() throws(SystemError) {
        epoll = try Self.owned("epoll_create1", vhu_epoll_create())
        timer = try Self.owned("timerfd_create", timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK) | Int32(TFD_CLOEXEC)))
        guard vhu_epoll_ctl(epoll.rawValue, 0, timer.rawValue, UInt32(VHU_READABLE), Self.timerToken) == 0 else {
            throw SystemError("epoll_ctl", errno: errno)
        }
    }

    private static func owned(_ call: String, _ fd: Int32) throws(SystemError) -> OwnedDescriptor {
        guard fd >= 0 else { throw SystemError(call, errno: errno) }
        return OwnedDescriptor(fd)
    }

    deinit {
        tokens.deallocate()
        ready.deallocate()
    }

    var descriptor: Int32 { epoll.rawValue }

    /// Watches `fd` (-1: none) for `direction` (libnbd's LIBNBD_AIO_DIRECTION bits; 0 takes it out).
    /// Changes the epoll set only when something changed: the steady state costs no system call.
    func watch(socket fd: Int32, direction: UInt32) {
        var wanted: UInt32 = 0
        if direction & UInt32(LIBNBD_AIO_DIRECTION_READ) != 0 { wanted |= UInt32(VHU_READABLE) }
        if direction & UInt32(LIBNBD_AIO_DIRECTION_WRITE) != 0 { wanted |= UInt32(VHU_WRITABLE) }
        if fd < 0 { wanted = 0 }
        guard fd != socket || wanted != interest else { return }
        if socket >= 0 && (fd != socket || wanted == 0) {
            // A closed socket left the set by itself; the call then fails harmlessly.
            _ = vhu_epoll_ctl(epoll.rawValue, 2, socket, 0, 0)
            socket = -1
            interest = 0
        }
        guard fd >= 0, wanted != 0 else { return }
        if socket == fd {
            _ = vhu_epoll_ctl(epoll.rawValue, 1, fd, wanted, Self.socketToken)
        } else if vhu_epoll_ctl(epoll.rawValue, 0, fd, wanted, Self.socketToken) != 0 && errno == EEXIST {
            _ = vhu_epoll_ctl(epoll.rawValue, 1, fd, wanted, Self.socketToken)
        }
        socket = fd
        interest = wanted
    }

    /// Forgets the socket before libnbd closes it.
    func forgetSocket() { watch(socket: -1, direction: 0) }

    /// Makes the timer fire at `deadline` (monotonic ns; 0: never).
    func arm(at deadline: UInt64) {
        guard deadline != armedAt else { return }
        armedAt = deadline
        var spec = itimerspec()
        spec.it_value = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        _ = timerfd_settime(timer.rawValue, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    /// Waits up to `timeoutMilliseconds` (0: just looks, -1: for ever) and takes a fired timer.
    func wait(timeoutMilliseconds: Int32) -> Events {
        var events = Events()
        let n = vhu_epoll_wait(epoll.rawValue, tokens, ready, 2, timeoutMilliseconds)
        for i in 0..<max(0, Int(n)) {
            if tokens[i] == Self.socketToken {
                events.socket = SocketReadiness(readable: ready[i] & UInt32(VHU_READABLE) != 0, writable: ready[i] & UInt32(VHU_WRITABLE) != 0,
                                                hangUp: ready[i] & UInt32(VHU_HANGUP) != 0)
            }
            if tokens[i] == Self.timerToken {
                var expirations: UInt64 = 0
                _ = read(timer.rawValue, &expirations, 8)
                // A one-shot timer that fired is disarmed: the next `arm` must set it again.
                armedAt = 0
                events.timer = true
            }
        }
        return events
    }

    /// Whether anything is ready (one epoll_wait that takes nothing).
    var isReady: Bool { vhu_epoll_wait(epoll.rawValue, tokens, nil, 1, 0) > 0 }
}
