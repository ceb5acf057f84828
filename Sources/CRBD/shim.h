// librbd and librados, the Ceph client libraries vhost-user-blk --rbd uses (Debian's librbd-dev ships
// no pkg-config file, so the module map links them by name).
#include <rados/librados.h>
#include <rbd/librbd.h>
