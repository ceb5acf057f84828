// libblkio (Debian's libblkio-dev, from trixie; see scripts/install-deps): the independent
// vhost-user-blk client that Benchmarks/vhost-user-blk-bench drives.
#include <blkio.h>
#include <stddef.h>
#include <sys/types.h>

// Swift's Glibc module is built without _GNU_SOURCE, which hides the affinity calls: the same glibc
// symbols under other names, with the CPU mask as plain bytes.
extern int cblkio_sched_getaffinity(pid_t pid, size_t size, void *mask) __asm__("sched_getaffinity");
extern int cblkio_sched_setaffinity(pid_t pid, size_t size, const void *mask) __asm__("sched_setaffinity");
