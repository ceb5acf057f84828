#include "CGPIO.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/gpio.h>

static uint64_t line_flags(int direction, int edges) {
    uint64_t flags = 0;
    if (direction == VHU_GPIO_INPUT) flags |= GPIO_V2_LINE_FLAG_INPUT;
    if (direction == VHU_GPIO_OUTPUT) flags |= GPIO_V2_LINE_FLAG_OUTPUT;
    // The kernel accepts edge detection on inputs only.
    if (edges && direction == VHU_GPIO_INPUT) flags |= GPIO_V2_LINE_FLAG_EDGE_RISING | GPIO_V2_LINE_FLAG_EDGE_FALLING;
    return flags;
}

static void fill_config(struct gpio_v2_line_config *config, int direction, int value, int edges) {
    memset(config, 0, sizeof(*config));
    config->flags = line_flags(direction, edges);
    if (direction == VHU_GPIO_OUTPUT) {
        config->num_attrs = 1;
        config->attrs[0].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
        config->attrs[0].attr.values = value ? 1 : 0;
        config->attrs[0].mask = 1;
    }
}

int vhu_gpio_chip_info(int chip, uint32_t *lines, char *label, uint32_t label_size) {
    struct gpiochip_info info;
    memset(&info, 0, sizeof(info));
    if (ioctl(chip, GPIO_GET_CHIPINFO_IOCTL, &info) < 0) return -1;
    *lines = info.lines;
    if (label_size > 0) {
        strncpy(label, info.label, label_size - 1);
        label[label_size - 1] = 0;
    }
    return 0;
}

int vhu_gpio_line_info(int chip, uint32_t offset, char *name, uint32_t name_size, int *is_output, int *is_used) {
    struct gpio_v2_line_info info;
    memset(&info, 0, sizeof(info));
    info.offset = offset;
    if (ioctl(chip, GPIO_V2_GET_LINEINFO_IOCTL, &info) < 0) return -1;
    if (name_size > 0) {
        strncpy(name, info.name, name_size - 1);
        name[name_size - 1] = 0;
    }
    *is_output = (info.flags & GPIO_V2_LINE_FLAG_OUTPUT) != 0;
    *is_used = (info.flags & GPIO_V2_LINE_FLAG_USED) != 0;
    return 0;
}

int vhu_gpio_request_line(int chip, uint32_t offset, int direction, int value, int edges, const char *consumer) {
    struct gpio_v2_line_request request;
    memset(&request, 0, sizeof(request));
    request.offsets[0] = offset;
    request.num_lines = 1;
    strncpy(request.consumer, consumer, sizeof(request.consumer) - 1);
    fill_config(&request.config, direction, value, edges);
    if (ioctl(chip, GPIO_V2_GET_LINE_IOCTL, &request) < 0) return -1;
    // The request descriptor is close-on-exec already; events are read without blocking.
    int flags = fcntl(request.fd, F_GETFL);
    if (flags < 0 || fcntl(request.fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int saved = errno;
        close(request.fd);
        errno = saved;
        return -1;
    }
    return request.fd;
}

int vhu_gpio_configure_line(int request, int direction, int value, int edges) {
    struct gpio_v2_line_config config;
    fill_config(&config, direction, value, edges);
    return ioctl(request, GPIO_V2_LINE_SET_CONFIG_IOCTL, &config) < 0 ? -1 : 0;
}

int vhu_gpio_get_value(int request) {
    struct gpio_v2_line_values values = { .bits = 0, .mask = 1 };
    if (ioctl(request, GPIO_V2_LINE_GET_VALUES_IOCTL, &values) < 0) return -1;
    return (values.bits & 1) ? 1 : 0;
}

int vhu_gpio_set_value(int request, int value) {
    struct gpio_v2_line_values values = { .bits = value ? 1 : 0, .mask = 1 };
    return ioctl(request, GPIO_V2_LINE_SET_VALUES_IOCTL, &values) < 0 ? -1 : 0;
}

int vhu_gpio_read_edge(int request) {
    struct gpio_v2_line_event event;
    ssize_t n = read(request, &event, sizeof(event));
    if (n < 0) return errno == EAGAIN ? -2 : -1;
    if ((size_t)n != sizeof(event)) {
        errno = EIO;
        return -1;
    }
    return event.id == GPIO_V2_LINE_EVENT_RISING_EDGE ? 1 : 0;
}
