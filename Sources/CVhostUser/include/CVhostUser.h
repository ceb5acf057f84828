// Small C helpers for what Swift cannot express directly: SCM_RIGHTS ancillary data (cmsg macros),
// memfd_create, the packed epoll_event, eventfd, and atomic accesses to memory shared with a guest.
#ifndef CVHOSTUSER_H
#define CVHOSTUSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/// Sends `len` bytes from `buf` with `nfds` file descriptors attached (SCM_RIGHTS), never raising SIGPIPE.
/// With `nonblocking`, fails with EAGAIN instead of waiting for room. Returns bytes sent or -1.
ssize_t vhu_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int nonblocking);

/// Receives up to `len` bytes into `buf` and up to `maxfds` descriptors into `fds` (*nfds set to the count,
/// received with MSG_CMSG_CLOEXEC). `*truncated` is set when the kernel dropped descriptors or control data
/// (MSG_CTRUNC); any descriptors that did arrive are still returned and must be closed by the caller.
/// Returns bytes received, 0 on EOF, or -1.
ssize_t vhu_recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated);

/// memfd_create(2) with MFD_CLOEXEC (and MFD_ALLOW_SEALING when `sealing` is non-zero).
int vhu_memfd_create(const char *name, int sealing);

/// eventfd(2), non-blocking and close-on-exec; with `semaphore`, each read takes 1 (EFD_SEMAPHORE).
int vhu_eventfd(unsigned int initval, int semaphore);

/// fallocate(2) with PUNCH_HOLE|KEEP_SIZE (`zero` = 0) or ZERO_RANGE|KEEP_SIZE (`zero` = 1): 0 or an errno.
int vhu_fallocate(int fd, int zero, uint64_t offset, uint64_t length);
/// pwritev2(2) with RWF_DSYNC: bytes written or -1.
ssize_t vhu_pwritev_dsync(int fd, const struct iovec *iov, int count, uint64_t offset);
/// The file system type (statfs f_type) of the file behind `fd`, or -1.
int64_t vhu_fs_type(int fd);
/// The O_DIRECT open flag.
int vhu_o_direct(void);

/// ioctl(2) with a pointer argument.
int vhu_ioctl_ptr(int fd, unsigned long request, void *arg);

/// getrandom(2) with no flags.
ssize_t vhu_getrandom(void *buf, size_t len);

/// accept4(SOCK_CLOEXEC) without the peer address.
int vhu_accept(int sock);

/// epoll_create1(EPOLL_CLOEXEC).
int vhu_epoll_create(void);
/// Interest and readiness bits for vhu_epoll_ctl and vhu_epoll_wait. VHU_EDGE (interest only) reports
/// readiness once per new event (EPOLLET), so a descriptor that stays readable or hung up cannot make a
/// waiter spin; VHU_HANGUP (readiness only) covers EPOLLHUP, EPOLLERR and EPOLLRDHUP.
enum { VHU_READABLE = 1, VHU_WRITABLE = 2, VHU_HANGUP = 4, VHU_EDGE = 8 };
/// epoll_ctl: `op` 0 adds, 1 modifies, 2 removes `fd`; events carry `token`. Returns 0 or -1.
int vhu_epoll_ctl(int epfd, int op, int fd, unsigned interest, uint64_t token);

/// Waits for events (retrying on EINTR); stores the tokens of ready descriptors in `tokens` and, when
/// `ready` is not NULL, their VHU_ readiness bits in `ready`. Returns the count (at most 16) or -1.
int vhu_epoll_wait(int epfd, uint64_t *tokens, unsigned *ready, int maxevents, int timeout_ms);

/// Sets O_NONBLOCK on `fd` (keeping its other status flags). Returns 0 or -1.
int vhu_set_nonblocking(int fd);

// Guest memory guard. A front-end can shrink the file behind a shared region after the back-end mapped
// it; touching the lost pages would raise SIGBUS and kill the daemon. Mappings registered here are
// guarded: a SIGBUS inside one replaces the faulting page with a private zero page (so the access
// completes harmlessly), marks the mapping as faulted and bumps a process-wide counter that the
// owner checks. A SIGBUS anywhere else goes to the previous handler (or kills the process as usual).

/// Installs the SIGBUS handler once per process (idempotent, thread-safe). Returns 0 or an errno value.
int vhu_guard_install(void);
/// Registers `length` bytes at `base`; returns a slot number, or -1 when the table is full.
int vhu_guard_register(void *base, size_t length);
/// Unregisters a slot (before the mapping is unmapped).
void vhu_guard_unregister(int slot);
/// Whether a fault hit the mapping in `slot` since it was registered.
int vhu_guard_faulted(int slot);
/// How many guarded faults the process has taken: cheap to poll for a change.
uint64_t vhu_guard_fault_count(void);

/// The pthread start routine type without Swift's nullability quirks across platforms.
typedef void *(*vhu_thread_fn)(void *);
/// Starts a joinable thread, named `name` when not NULL (15 bytes kept; what top -H and
/// /proc/PID/task/TID/comm show), and returns once it runs under that name. Returns 0 or an errno value.
int vhu_thread_start(uint64_t *thread, vhu_thread_fn fn, void *arg, const char *name);
/// Joins a thread started by vhu_thread_start.
int vhu_thread_join(uint64_t thread);

// Atomic accesses to ring indices in guest memory (virtio 1.2, 2.7.13 and 2.7.14: the driver publishes
// avail->idx after the ring entries, the device publishes used->idx after the used elements).
static inline uint16_t vhu_load_acquire_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static inline void vhu_store_release_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}
static inline uint16_t vhu_load_relaxed_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}
static inline void vhu_store_relaxed_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}
/// A full barrier: orders a store to shared memory before a later load (event-idx checks).
static inline void vhu_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/// Orders earlier stores before later stores.
static inline void vhu_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
/// Orders earlier loads before later loads and stores.
static inline void vhu_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
/// Sets `bits` in a byte of the dirty log, which the front-end reads and clears concurrently: a locked
/// read-modify-write, ordered after the guest-memory writes it reports.
static inline void vhu_atomic_or_u8(void *p, uint8_t bits) {
    (void)__atomic_fetch_or((uint8_t *)p, bits, __ATOMIC_SEQ_CST);
}

#endif
