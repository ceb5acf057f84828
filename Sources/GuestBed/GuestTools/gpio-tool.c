// gpio-tool: a guest's view of a GPIO chip through the Linux character device (uAPI v2), for the
// vhost-user-gpio guest tests and demo. Static, no library: busybox has no GPIO applet.
//
//   gpio-tool info CHIP                         label, line count, each line's name and direction
//   gpio-tool get CHIP LINE                     the line's value as an input
//   gpio-tool set CHIP LINE VALUE               drive the line as an output (released on exit)
//   gpio-tool loop CHIP OUT IN                  drive OUT high then low, reading IN each time
//   gpio-tool wait CHIP LINE EDGE MS COUNT      wait for COUNT edges (rising|falling|both) on LINE,
//                                               at most MS milliseconds for each; prints "waiting"
//                                               once the interrupt is armed, then EDGE.eventN=rising|falling
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/gpio.h>

static int fail(const char *what) {
    fprintf(stderr, "gpio-tool: %s: %s\n", what, strerror(errno));
    return 1;
}

static int open_chip(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fail("open");
        exit(1);
    }
    return fd;
}

/// Requests one line with `flags` (and an initial output value); returns the request fd or -1.
static int request_line(int chip, unsigned line, unsigned long long flags, int value) {
    struct gpio_v2_line_request request;
    memset(&request, 0, sizeof(request));
    request.offsets[0] = line;
    request.num_lines = 1;
    strcpy(request.consumer, "gpio-tool");
    request.config.flags = flags;
    if (flags & GPIO_V2_LINE_FLAG_OUTPUT) {
        request.config.num_attrs = 1;
        request.config.attrs[0].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
        request.config.attrs[0].attr.values = value ? 1 : 0;
        request.config.attrs[0].mask = 1;
    }
    if (ioctl(chip, GPIO_V2_GET_LINE_IOCTL, &request) < 0) return -1;
    return request.fd;
}

static int get_value(int request) {
    struct gpio_v2_line_values values = { .bits = 0, .mask = 1 };
    if (ioctl(request, GPIO_V2_LINE_GET_VALUES_IOCTL, &values) < 0) return -1;
    return (int)(values.bits & 1);
}

static int set_value(int request, int value) {
    struct gpio_v2_line_values values = { .bits = value ? 1 : 0, .mask = 1 };
    return ioctl(request, GPIO_V2_LINE_SET_VALUES_IOCTL, &values);
}

static int info(int chip) {
    struct gpiochip_info chip_info;
    memset(&chip_info, 0, sizeof(chip_info));
    if (ioctl(chip, GPIO_GET_CHIPINFO_IOCTL, &chip_info) < 0) return fail("chipinfo");
    printf("label=%s\nlines=%u\n", chip_info.label, chip_info.lines);
    for (unsigned i = 0; i < chip_info.lines; i++) {
        struct gpio_v2_line_info line;
        memset(&line, 0, sizeof(line));
        line.offset = i;
        if (ioctl(chip, GPIO_V2_GET_LINEINFO_IOCTL, &line) < 0) return fail("lineinfo");
        printf("line%u=%s,%s\n", i, line.name, (line.flags & GPIO_V2_LINE_FLAG_OUTPUT) ? "out" : "in");
    }
    return 0;
}

static int get(int chip, unsigned line) {
    int request = request_line(chip, line, GPIO_V2_LINE_FLAG_INPUT, 0);
    if (request < 0) return fail("request");
    int value = get_value(request);
    if (value < 0) return fail("get");
    printf("value=%d\n", value);
    return 0;
}

static int set(int chip, unsigned line, int value) {
    int request = request_line(chip, line, GPIO_V2_LINE_FLAG_OUTPUT, value);
    if (request < 0) return fail("request");
    printf("set=%d\n", value);
    return 0;
}

static int loop(int chip, unsigned out, unsigned in) {
    int output = request_line(chip, out, GPIO_V2_LINE_FLAG_OUTPUT, 0);
    if (output < 0) return fail("request-out");
    int input = request_line(chip, in, GPIO_V2_LINE_FLAG_INPUT, 0);
    if (input < 0) return fail("request-in");
    if (set_value(output, 1) < 0) return fail("set");
    int high = get_value(input);
    if (set_value(output, 0) < 0) return fail("set");
    int low = get_value(input);
    printf("loop_high=%d\nloop_low=%d\n", high, low);
    return 0;
}

static int wait_edges(int chip, unsigned line, const char *edge, int milliseconds, int count) {
    unsigned long long flags = GPIO_V2_LINE_FLAG_INPUT;
    if (!strcmp(edge, "rising") || !strcmp(edge, "both")) flags |= GPIO_V2_LINE_FLAG_EDGE_RISING;
    if (!strcmp(edge, "falling") || !strcmp(edge, "both")) flags |= GPIO_V2_LINE_FLAG_EDGE_FALLING;
    int request = request_line(chip, line, flags, 0);
    if (request < 0) return fail("request");
    printf("waiting\n");
    fflush(stdout);
    for (int i = 0; i < count; i++) {
        struct pollfd pfd = { .fd = request, .events = POLLIN };
        int ready = poll(&pfd, 1, milliseconds);
        if (ready < 0) return fail("poll");
        if (ready == 0) {
            printf("%s.timeout=%d\n", edge, i + 1);
            fprintf(stderr, "gpio-tool: no %s edge within %d ms\n", edge, milliseconds);
            return 2;
        }
        struct gpio_v2_line_event event;
        if (read(request, &event, sizeof(event)) != sizeof(event)) return fail("read");
        printf("%s.event%d=%s\n", edge, i + 1, event.id == GPIO_V2_LINE_EVENT_RISING_EDGE ? "rising" : "falling");
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "info")) return info(open_chip(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "get")) return get(open_chip(argv[2]), (unsigned)atoi(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "set")) return set(open_chip(argv[2]), (unsigned)atoi(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "loop")) return loop(open_chip(argv[2]), (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
    if (argc >= 7 && !strcmp(argv[1], "wait"))
        return wait_edges(open_chip(argv[2]), (unsigned)atoi(argv[3]), argv[4], atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: gpio-tool info CHIP | get CHIP LINE | set CHIP LINE VALUE | loop CHIP OUT IN | wait CHIP LINE rising|falling|both MS COUNT\n");
    return 64;
}
