#define _GNU_SOURCE
#include "CVhostUser.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#define VHU_MAX_FDS 32

ssize_t vhu_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, int nfds, int nonblocking) {
    if (nfds < 0 || nfds > VHU_MAX_FDS) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL | (nonblocking ? MSG_DONTWAIT : 0)); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t vhu_recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                          .msg_controllen = sizeof(control.buf) };
    *nfds = 0;
    *truncated = 0;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = data[i];
            else { close(data[i]); *truncated = 1; }
        }
    }
    return n;
}

int vhu_memfd_create(const char *name, int sealing) {
    return memfd_create(name, MFD_CLOEXEC | (sealing ? MFD_ALLOW_SEALING : 0));
}

int vhu_eventfd(unsigned int initval, int semaphore) {
    return eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC | (semaphore ? EFD_SEMAPHORE : 0));
}

int vhu_fallocate(int fd, int zero, uint64_t offset, uint64_t length) {
    int mode = FALLOC_FL_KEEP_SIZE | (zero ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
    return fallocate(fd, mode, (off_t)offset, (off_t)length) == 0 ? 0 : errno;
}

ssize_t vhu_pwritev_dsync(int fd, const struct iovec *iov, int count, uint64_t offset) {
    return pwritev2(fd, iov, count, (off_t)offset, RWF_DSYNC);
}

int64_t vhu_fs_type(int fd) {
    struct statfs fs;
    return fstatfs(fd, &fs) == 0 ? (int64_t)fs.f_type : -1;
}

int vhu_o_direct(void) { return O_DIRECT; }

int vhu_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }

ssize_t vhu_getrandom(void *buf, size_t len) { return getrandom(buf, len, 0); }

int vhu_accept(int sock) { return accept4(sock, NULL, NULL, SOCK_CLOEXEC); }

int vhu_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static uint32_t epoll_interest(unsigned interest) {
    uint32_t events = 0;
    if (interest & VHU_READABLE) events |= EPOLLIN | EPOLLRDHUP;
    if (interest & VHU_WRITABLE) events |= EPOLLOUT;
    if (interest & VHU_EDGE) events |= EPOLLET;
    return events;
}

int vhu_epoll_ctl(int epfd, int op, int fd, unsigned interest, uint64_t token) {
    struct epoll_event ev = { .events = epoll_interest(interest), .data.u64 = token };
    int ops[] = { EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL };
    if (op < 0 || op > 2) { errno = EINVAL; return -1; }
    return epoll_ctl(epfd, ops[op], fd, &ev);
}

int vhu_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return (flags & O_NONBLOCK) ? 0 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int vhu_epoll_wait(int epfd, uint64_t *tokens, unsigned *ready, int maxevents, int timeout_ms) {
    struct epoll_event events[16];
    if (maxevents > 16) maxevents = 16;
    int n;
    do { n = epoll_wait(epfd, events, maxevents, timeout_ms); } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        tokens[i] = events[i].data.u64;
        if (ready) {
            uint32_t e = events[i].events;
            ready[i] = ((e & EPOLLIN) ? VHU_READABLE : 0) | ((e & EPOLLOUT) ? VHU_WRITABLE : 0)
                | ((e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ? VHU_HANGUP : 0);
        }
    }
    return n;
}

struct thread_start {
    vhu_thread_fn fn;
    void *arg;
    char name[16];
    sem_t started;
};

static void *thread_trampoline(void *raw) {
    struct thread_start *start = raw;
    if (start->name[0]) prctl(PR_SET_NAME, (unsigned long)start->name, 0, 0, 0);
    vhu_thread_fn fn = start->fn;
    void *arg = start->arg;
    sem_post(&start->started);  // `start` lives on the creator's stack: not used after this
    return fn(arg);
}

int vhu_thread_start(uint64_t *thread, vhu_thread_fn fn, void *arg, const char *name) {
    struct thread_start start = { .fn = fn, .arg = arg };
    if (name) snprintf(start.name, sizeof(start.name), "%s", name);
    sem_init(&start.started, 0, 0);
    pthread_t t;
    int rc = pthread_create(&t, NULL, thread_trampoline, &start);
    if (rc == 0) {
        while (sem_wait(&start.started) != 0 && errno == EINTR) {}
        *thread = (uint64_t)t;
    }
    sem_destroy(&start.started);
    return rc;
}

int vhu_thread_join(uint64_t thread) { return pthread_join((pthread_t)thread, NULL); }
