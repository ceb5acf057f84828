// vsock-tool: AF_VSOCK stream and seqpacket sockets from a guest, for the vhost-user-vsock guest
// tests and demo. Static, no library: busybox has no vsock client.
//
//   vsock-tool exchange CID PORT BYTES        connect (stream), send BYTES of the pattern while reading
//                                              the echo; prints sent.fnv, echo.fnv, echo.bytes
//   vsock-tool seqcheck CID PORT              connect (seqpacket), send messages of 1 B to 64 KiB and
//                                              check each echo is one message of the same bytes;
//                                              prints seq.ok=N seq.bad=M
//   vsock-tool echo PORT stream|seqpacket N   listen on PORT, serve N connections one after another,
//                                              echoing bytes (stream) or messages (seqpacket)
//   vsock-tool retry CID PORT MS              connect (stream) until it works or MS pass; sends "ping",
//                                              prints retry.reply=... from the echo
//   vsock-tool hold CID PORT                  connect (stream), check one "ping" echo, print
//                                              hold.connected=1, then how the connection ends:
//                                              hold.after=reset|eof|timeout (60 s)|data|error
//   vsock-tool probe CID PORT                 prints the guest's own CID (cid=N) and how a connect to
//                                              CID:PORT ends (connect=ok|refused|errno N)
//
// The pattern: byte i of a stream is (i * 31 + (i >> 8) + 7) & 0xff. Sums are FNV-1a 64.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int fail(const char *what) {
    fprintf(stderr, "vsock-tool: %s: %s\n", what, strerror(errno));
    return 1;
}

static uint8_t pattern_byte(uint64_t i) { return (uint8_t)(i * 31 + (i >> 8) + 7); }

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}
#define FNV_START 14695981039346656037ULL

static int vsock_connect(unsigned cid, unsigned port, int type) {
    int fd = socket(AF_VSOCK, type, 0);
    if (fd < 0) return -1;
    /* Linux gives up on a connect after 2 s. Between two guests under TCG on a busy machine the
     * peer's RESPONSE can take longer (each guest answers only when it is scheduled), and a timed-out
     * connect is indistinguishable from a lost one: wait as long as a test may run instead. */
    struct timeval patience = { .tv_sec = 240 };
    if (setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &patience, sizeof(patience)) < 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int exchange(unsigned cid, unsigned port, uint64_t total) {
    int fd = vsock_connect(cid, port, SOCK_STREAM);
    if (fd < 0) return fail("connect");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static uint8_t out[65536], in[65536];
    uint64_t sent = 0, got = 0, sent_h = FNV_START, got_h = FNV_START;
    long long start = now_ms();
    while (got < total) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };
        if (poll(&p, 1, 60000) <= 0) return fail("poll (stalled)");
        if (sent < total && (p.revents & POLLOUT)) {
            size_t n = total - sent < sizeof(out) ? (size_t)(total - sent) : sizeof(out);
            for (size_t i = 0; i < n; i++) out[i] = pattern_byte(sent + i);
            ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) return fail("send");
            if (w > 0) { sent_h = fnv(sent_h, out, (size_t)w); sent += (uint64_t)w; }
            if (sent == total) shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t r = recv(fd, in, sizeof(in), 0);
            if (r < 0 && errno != EAGAIN) return fail("recv");
            if (r == 0) break;
            if (r > 0) { got_h = fnv(got_h, in, (size_t)r); got += (uint64_t)r; }
        }
    }
    long long ms = now_ms() - start;
    printf("sent.fnv=%016llx\necho.fnv=%016llx\necho.bytes=%llu\nexchange.ms=%lld\n",
           (unsigned long long)sent_h, (unsigned long long)got_h, (unsigned long long)got, ms);
    close(fd);
    return 0;
}

static const int seq_sizes[] = { 1, 2, 3, 100, 1000, 4052, 4096, 4097, 8192, 12345, 32768, 65535, 65536 };
#define SEQ_COUNT (int)(sizeof(seq_sizes) / sizeof(seq_sizes[0]))

static int seqcheck(unsigned cid, unsigned port) {
    int fd = vsock_connect(cid, port, SOCK_SEQPACKET);
    if (fd < 0) return fail("connect seqpacket");
    static uint8_t out[65536], in[70000];
    int ok = 0, bad = 0;
    for (int k = 0; k < SEQ_COUNT; k++) {
        int n = seq_sizes[k];
        for (int i = 0; i < n; i++) out[i] = pattern_byte((uint64_t)i + (uint64_t)k);
        if (send(fd, out, (size_t)n, MSG_EOR) != n) return fail("send message");
        ssize_t r = recv(fd, in, sizeof(in), 0);
        if (r == n && memcmp(in, out, (size_t)n) == 0) ok++;
        else { bad++; fprintf(stderr, "vsock-tool: message of %d came back as %zd bytes\n", n, r); }
    }
    printf("seq.ok=%d\nseq.bad=%d\n", ok, bad);
    close(fd);
    return 0;
}

static int echo(unsigned port, int type, int connections) {
    int listener = socket(AF_VSOCK, type, 0);
    if (listener < 0) return fail("socket");
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0) return fail("bind");
    if (listen(listener, 4) < 0) return fail("listen");
    printf("echo.listening=%u\n", port);
    fflush(stdout);
    static uint8_t buf[70000];
    for (int c = 0; c < connections; c++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) return fail("accept");
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof(buf), 0);
            if (r <= 0) break;
            if (type == SOCK_SEQPACKET) {
                if (send(fd, buf, (size_t)r, MSG_EOR | MSG_NOSIGNAL) != r) break;
            } else {
                ssize_t done = 0;
                while (done < r) {
                    ssize_t w = send(fd, buf + done, (size_t)(r - done), MSG_NOSIGNAL);
                    if (w <= 0) break;
                    done += w;
                }
                if (done < r) break;
            }
        }
        close(fd);
    }
    close(listener);
    return 0;
}

static int retry(unsigned cid, unsigned port, long long ms) {
    long long deadline = now_ms() + ms;
    int fd = -1;
    while ((fd = vsock_connect(cid, port, SOCK_STREAM)) < 0) {
        if (now_ms() > deadline) return fail("connect (retried)");
        usleep(100000);
    }
    if (send(fd, "ping", 4, MSG_NOSIGNAL) != 4) return fail("send");
    shutdown(fd, SHUT_WR);
    char reply[16] = { 0 };
    ssize_t r = recv(fd, reply, sizeof(reply) - 1, MSG_WAITALL);
    printf("retry.reply=%s\n", r > 0 ? reply : "(none)");
    close(fd);
    return 0;
}

/* Connects, checks that "ping" comes back, prints hold.connected=1, then waits up to 60 s for what
   comes next: hold.after=reset (ECONNRESET, e.g. a transport reset), eof, timeout, data or an error. */
static int hold(unsigned cid, unsigned port) {
    int fd = vsock_connect(cid, port, SOCK_STREAM);
    if (fd < 0) return fail("connect");
    char buf[16] = { 0 };
    if (send(fd, "ping", 4, MSG_NOSIGNAL) != 4 || recv(fd, buf, 4, MSG_WAITALL) != 4 || memcmp(buf, "ping", 4) != 0)
        return fail("ping");
    printf("hold.connected=1\n");
    fflush(stdout);
    struct timeval timeout = { .tv_sec = 60 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    const char *what = r > 0 ? "data" : r == 0 ? "eof" : errno == EAGAIN ? "timeout" : errno == ECONNRESET ? "reset" : strerror(errno);
    printf("hold.after=%s\n", what);
    close(fd);
    return 0;
}

static int probe(unsigned cid, unsigned port) {
    int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    unsigned local = 0;
    if (dev < 0 || ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &local) < 0) return fail("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
    printf("cid=%u\n", local);
    int fd = vsock_connect(cid, port, SOCK_STREAM);
    if (fd >= 0) { printf("connect=ok\n"); close(fd); }
    else if (errno == ECONNRESET || errno == ECONNREFUSED) printf("connect=refused\n");
    else printf("connect=errno %d\n", errno);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "exchange") == 0) return exchange((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), strtoull(argv[4], NULL, 10));
    if (argc >= 4 && strcmp(argv[1], "seqcheck") == 0) return seqcheck((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
    if (argc >= 5 && strcmp(argv[1], "echo") == 0)
        return echo((unsigned)atoi(argv[2]), strcmp(argv[3], "seqpacket") == 0 ? SOCK_SEQPACKET : SOCK_STREAM, atoi(argv[4]));
    if (argc >= 5 && strcmp(argv[1], "retry") == 0) return retry((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), atoll(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "hold") == 0) return hold((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "probe") == 0) return probe((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
    fprintf(stderr, "usage: vsock-tool exchange CID PORT BYTES | seqcheck CID PORT | echo PORT stream|seqpacket N | retry CID PORT MS | hold CID PORT | probe CID PORT\n");
    return 2;
}
