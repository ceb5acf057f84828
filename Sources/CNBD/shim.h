// libnbd, the NBD client library vhost-user-blk --nbd uses.
#include <libnbd.h>
