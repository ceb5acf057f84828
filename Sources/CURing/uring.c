#include "CURing.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

struct vhu_uring {
    struct io_uring ring;
    int eventfd;
};

/// The only operations a ring accepts: what the engine submits. io_uring operations bypass the
/// seccomp filter, so without this a compromised daemon could open files or sockets through its ring.
static const struct io_uring_restriction allowed_operations[] = {
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC },
};

/// io_uring_register(2) directly: Debian bookworm's liburing 2.3 declares
/// io_uring_register_restrictions and io_uring_enable_rings but does not export them.
static int register_ring(struct io_uring *ring, unsigned opcode, const void *arg, unsigned count) {
    return syscall(__NR_io_uring_register, ring->ring_fd, opcode, arg, count) < 0 ? -errno : 0;
}

vhu_uring *vhu_uring_create(unsigned entries) {
    vhu_uring *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    // Disabled until restricted: no SQE flags, no registrations, only the operations above.
    struct io_uring_params params = { .flags = IORING_SETUP_R_DISABLED };
    int rc = io_uring_queue_init_params(entries, &r->ring, &params);
    if (rc < 0) { free(r); errno = -rc; return NULL; }
    r->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->eventfd < 0) rc = -errno;
    if (rc == 0) rc = io_uring_register_eventfd(&r->ring, r->eventfd);
    if (rc == 0) rc = register_ring(&r->ring, IORING_REGISTER_RESTRICTIONS, allowed_operations,
                                    sizeof(allowed_operations) / sizeof(allowed_operations[0]));
    if (rc == 0) rc = register_ring(&r->ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (rc < 0) {
        if (r->eventfd >= 0) close(r->eventfd);
        io_uring_queue_exit(&r->ring);
        free(r);
        errno = -rc;
        return NULL;
    }
    return r;
}

void vhu_uring_destroy(vhu_uring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    close(r->eventfd);
    free(r);
}

int vhu_uring_eventfd(const vhu_uring *r) { return r->eventfd; }

int vhu_uring_readv(vhu_uring *r, int fd, const struct iovec *iov, unsigned count, uint64_t offset, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -1;
    io_uring_prep_readv(sqe, fd, iov, count, offset);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vhu_uring_writev(vhu_uring *r, int fd, const struct iovec *iov, unsigned count, uint64_t offset, int dsync, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -1;
    io_uring_prep_writev(sqe, fd, iov, count, offset);
    sqe->rw_flags = dsync ? RWF_DSYNC : 0;
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vhu_uring_fdatasync(vhu_uring *r, int fd, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -1;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

unsigned vhu_uring_ready(vhu_uring *r) { return io_uring_cq_ready(&r->ring); }

int vhu_uring_submit(vhu_uring *r) { return io_uring_submit(&r->ring); }

int vhu_uring_reap(vhu_uring *r, uint64_t *tags, int32_t *results, int max, int wait) {
    uint64_t drained;
    (void)!read(r->eventfd, &drained, sizeof(drained));
    int n = 0;
    struct io_uring_cqe *cqe;
    if (wait && io_uring_wait_cqe(&r->ring, &cqe) < 0) return 0;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        tags[n] = io_uring_cqe_get_data64(cqe);
        results[n] = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        n++;
    }
    return n;
}
