// The Linux GPIO character device (uAPI v2) for vhost-user-gpio's passthrough chip: the ioctl numbers
// are macros and the structs carry fixed arrays and unions, which Swift cannot express.
#ifndef CGPIO_H
#define CGPIO_H

#include <stdint.h>

/// Line request directions for vhu_gpio_request_line / vhu_gpio_configure_line.
enum {
    VHU_GPIO_AS_IS = 0,
    VHU_GPIO_INPUT = 1,
    VHU_GPIO_OUTPUT = 2,
};

/// The number of lines and the label of the chip open at `chip`; 0 or -1 with errno.
int vhu_gpio_chip_info(int chip, uint32_t *lines, char *label, uint32_t label_size);
/// Line `offset`'s name (NUL-terminated, at most 32 bytes), whether it is an output, and whether the
/// kernel or another process uses it; 0 or -1 with errno.
int vhu_gpio_line_info(int chip, uint32_t offset, char *name, uint32_t name_size, int *is_output, int *is_used);
/// Requests line `offset` for `direction` (the initial `value` for an output), with edge events
/// (both edges) when `edges`; returns the line request descriptor (non-blocking, close-on-exec) or -1.
int vhu_gpio_request_line(int chip, uint32_t offset, int direction, int value, int edges, const char *consumer);
/// Changes a requested line's direction, output value and edge events; 0 or -1 with errno.
int vhu_gpio_configure_line(int request, int direction, int value, int edges);
/// The line's value (0 or 1) or -1 with errno.
int vhu_gpio_get_value(int request);
/// Drives an output line; 0 or -1 with errno.
int vhu_gpio_set_value(int request, int value);
/// Reads one edge event: 1 rising, 0 falling, -2 when none is pending (EAGAIN), -1 on error.
int vhu_gpio_read_edge(int request);

#endif
