// A narrow io_uring interface for the block device's queue workers. liburing's header cannot be
// imported into Swift next to Glibc (conflicting fd_set definitions), so its inline API is wrapped here.
#ifndef CURING_H
#define CURING_H

#include <stdint.h>
#include <sys/uio.h>

/// One ring, owned by one queue worker thread.
typedef struct vhu_uring vhu_uring;

/// Creates a ring with at least `entries` submission entries and a non-blocking eventfd that is
/// signalled when completions arrive. The ring accepts readv, writev and fsync only
/// (IORING_REGISTER_RESTRICTIONS). Returns NULL (errno set) when io_uring is unavailable.
vhu_uring *vhu_uring_create(unsigned entries);
void vhu_uring_destroy(vhu_uring *ring);
/// The completion eventfd to wait on (drained by vhu_uring_reap).
int vhu_uring_eventfd(const vhu_uring *ring);

/// Queue operations; each returns 0, or -1 when the submission queue is full (submit, then retry).
int vhu_uring_readv(vhu_uring *ring, int fd, const struct iovec *iov, unsigned count, uint64_t offset, uint64_t tag);
/// With `dsync`, the write is stable when it completes (RWF_DSYNC).
int vhu_uring_writev(vhu_uring *ring, int fd, const struct iovec *iov, unsigned count, uint64_t offset, int dsync, uint64_t tag);
int vhu_uring_fdatasync(vhu_uring *ring, int fd, uint64_t tag);

/// The number of completions waiting to be reaped.
unsigned vhu_uring_ready(vhu_uring *ring);

/// Submits everything queued; returns the number submitted or -errno.
int vhu_uring_submit(vhu_uring *ring);
/// Stores up to `max` finished operations (tag, result: bytes or -errno); returns their count.
/// With `wait`, blocks until at least one is there.
int vhu_uring_reap(vhu_uring *ring, uint64_t *tags, int32_t *results, int max, int wait);

#endif
