#define _GNU_SOURCE
#include "CFuzzShim.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_memfd(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int fuzz_zero_file(int fd, size_t size) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
}
