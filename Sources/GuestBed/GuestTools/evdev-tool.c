// evdev-tool: what the input guest tests read from /dev/input/eventN (busybox has no evdev reader).
//
//   evdev-tool find NAME                  prints the /dev/input/eventN whose device is called NAME
//   evdev-tool info DEVICE                prints name=, id=, props=, and abs.AXIS=min max fuzz flat res
//                                         for every absolute axis (EVIOCGABS)
//   evdev-tool read DEVICE COUNT READY    opens DEVICE, prints the line READY, then prints COUNT events
//                                         as "type code value" lines (60 s at most)
//
// Exits 1 with a message on stderr when something fails.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "evdev-tool: %s %s: %s\n", what, detail, errno ? strerror(errno) : "failed");
    return 1;
}

static int open_device(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) exit(fail("open", path));
    return fd;
}

static int find(const char *name) {
    DIR *dir = opendir("/dev/input");
    if (!dir) return fail("opendir", "/dev/input");
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (strncmp(entry->d_name, "event", 5) != 0) continue;
        char path[300], found[256] = {0};
        snprintf(path, sizeof path, "/dev/input/%s", entry->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        int n = ioctl(fd, EVIOCGNAME(sizeof found - 1), found);
        close(fd);
        if (n >= 0 && strcmp(found, name) == 0) {
            printf("%s\n", path);
            closedir(dir);
            return 0;
        }
    }
    closedir(dir);
    errno = ENOENT;
    return fail("find", name);
}

static int test_bit(const unsigned char *bits, int bit) { return bits[bit / 8] & (1 << (bit % 8)); }

static int info(const char *path) {
    int fd = open_device(path);
    char name[256] = {0};
    struct input_id id;
    unsigned char props[INPUT_PROP_CNT / 8 + 1] = {0}, abs_bits[ABS_CNT / 8 + 1] = {0};
    if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) < 0) return fail("EVIOCGNAME", path);
    if (ioctl(fd, EVIOCGID, &id) < 0) return fail("EVIOCGID", path);
    if (ioctl(fd, EVIOCGPROP(sizeof props), props) < 0) return fail("EVIOCGPROP", path);
    if (ioctl(fd, EVIOCGBIT(EV_ABS, sizeof abs_bits), abs_bits) < 0) return fail("EVIOCGBIT", path);
    printf("name=%s\n", name);
    printf("id=%04x %04x %04x %04x\n", id.bustype, id.vendor, id.product, id.version);
    printf("props=");
    for (int p = 0; p < INPUT_PROP_CNT; p++) if (test_bit(props, p)) printf("%d ", p);
    printf("\n");
    for (int axis = 0; axis < ABS_CNT; axis++) {
        if (!test_bit(abs_bits, axis)) continue;
        struct input_absinfo abs;
        if (ioctl(fd, EVIOCGABS(axis), &abs) < 0) return fail("EVIOCGABS", path);
        printf("abs.%d=%d %d %d %d %d\n", axis, abs.minimum, abs.maximum, abs.fuzz, abs.flat, abs.resolution);
    }
    close(fd);
    return 0;
}

static int read_events(const char *path, int count, const char *ready) {
    int fd = open_device(path);
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("%s\n", ready);
    int seen = 0;
    while (seen < count) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 60000);
        if (n == 0) {
            fprintf(stderr, "evdev-tool: %s: %d of %d events within 60 s\n", path, seen, count);
            return 1;
        }
        if (n < 0) return fail("poll", path);
        struct input_event events[64];
        ssize_t got = read(fd, events, sizeof events);
        if (got < 0) return fail("read", path);
        for (size_t i = 0; i < (size_t)got / sizeof events[0] && seen < count; i++, seen++) {
            printf("%u %u %d\n", events[i].type, events[i].code, events[i].value);
        }
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "find") == 0) return find(argv[2]);
    if (argc == 3 && strcmp(argv[1], "info") == 0) return info(argv[2]);
    if (argc == 5 && strcmp(argv[1], "read") == 0) return read_events(argv[2], atoi(argv[3]), argv[4]);
    fprintf(stderr, "usage: evdev-tool find NAME | info DEVICE | read DEVICE COUNT READY-LINE\n");
    return 2;
}
