// The evdev and uinput ioctls (their request numbers are macros of the kernel's UAPI headers that
// Swift cannot import) and the kernel's struct input_event read from an evdev descriptor.
#ifndef CINPUT_H
#define CINPUT_H

#include <stdint.h>

/// One event as an evdev descriptor delivers it, without the timestamp.
typedef struct {
    uint16_t type;
    uint16_t code;
    int32_t value;
} vhu_input_event;

/// An axis' range (struct input_absinfo without the current value).
typedef struct {
    int32_t minimum, maximum, fuzz, flat, resolution;
} vhu_input_absinfo;

/// The size of the kernel's struct input_event on this architecture.
int vhu_input_event_size(void);
/// Decodes the kernel's struct input_event at `bytes` (vhu_input_event_size() bytes).
vhu_input_event vhu_input_event_decode(const void *bytes);
/// Encodes an event as the kernel's struct input_event (timestamp 0) into `bytes`.
void vhu_input_event_encode(vhu_input_event event, void *bytes);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (a control-socket client).
int vhu_accept_nonblocking(int sock);

// evdev (see linux/input.h); each returns what ioctl(2) returns (-1 and errno on failure).
int vhu_evdev_name(int fd, char *buffer, int length);
int vhu_evdev_uniq(int fd, char *buffer, int length);
/// bustype, vendor, product, version.
int vhu_evdev_id(int fd, uint16_t ids[4]);
int vhu_evdev_props(int fd, uint8_t *bits, int length);
/// The codes of event type `type` (0: the event types themselves).
int vhu_evdev_bits(int fd, int type, uint8_t *bits, int length);
int vhu_evdev_abs(int fd, int axis, vhu_input_absinfo *info);
int vhu_evdev_grab(int fd, int grab);

// uinput (see linux/uinput.h): a host input device for the passthrough tests.
int vhu_uinput_set_bit(int fd, int type, int code);
int vhu_uinput_set_prop(int fd, int prop);
int vhu_uinput_abs_setup(int fd, int axis, vhu_input_absinfo info);
int vhu_uinput_create(int fd, const char *name, const uint16_t ids[4]);
int vhu_uinput_destroy(int fd);
/// The evdev node's name (eventN) of the uinput device, into `buffer`.
int vhu_uinput_sysname(int fd, char *buffer, int length);

#endif
