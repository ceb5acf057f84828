// libnbd, the NBD client library vhost-user-blk --nbd uses.
#include <libnbd.h>
// The timerfd that wakes the NBD engine for reconnects and deadlines (Glibc's module leaves it out).
#include <sys/timerfd.h>
