#define _GNU_SOURCE
#include "CInput.h"

#include <sys/socket.h>

#include <linux/input.h>
#include <linux/uinput.h>
#include <string.h>
#include <sys/ioctl.h>

int vhu_input_event_size(void) { return (int)sizeof(struct input_event); }

vhu_input_event vhu_input_event_decode(const void *bytes) {
    struct input_event kernel;
    memcpy(&kernel, bytes, sizeof kernel);
    vhu_input_event event = {kernel.type, kernel.code, kernel.value};
    return event;
}

void vhu_input_event_encode(vhu_input_event event, void *bytes) {
    struct input_event kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.type = event.type;
    kernel.code = event.code;
    kernel.value = event.value;
    memcpy(bytes, &kernel, sizeof kernel);
}

int vhu_accept_nonblocking(int sock) { return accept4(sock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int vhu_evdev_name(int fd, char *buffer, int length) { return ioctl(fd, EVIOCGNAME(length), buffer); }
int vhu_evdev_uniq(int fd, char *buffer, int length) { return ioctl(fd, EVIOCGUNIQ(length), buffer); }

int vhu_evdev_id(int fd, uint16_t ids[4]) {
    struct input_id id;
    int rc = ioctl(fd, EVIOCGID, &id);
    if (rc >= 0) {
        ids[0] = id.bustype;
        ids[1] = id.vendor;
        ids[2] = id.product;
        ids[3] = id.version;
    }
    return rc;
}

int vhu_evdev_props(int fd, uint8_t *bits, int length) { return ioctl(fd, EVIOCGPROP(length), bits); }
int vhu_evdev_bits(int fd, int type, uint8_t *bits, int length) { return ioctl(fd, EVIOCGBIT(type, length), bits); }

int vhu_evdev_abs(int fd, int axis, vhu_input_absinfo *info) {
    struct input_absinfo abs;
    int rc = ioctl(fd, EVIOCGABS(axis), &abs);
    if (rc >= 0) {
        info->minimum = abs.minimum;
        info->maximum = abs.maximum;
        info->fuzz = abs.fuzz;
        info->flat = abs.flat;
        info->resolution = abs.resolution;
    }
    return rc;
}

int vhu_evdev_grab(int fd, int grab) { return ioctl(fd, EVIOCGRAB, grab); }

int vhu_uinput_set_bit(int fd, int type, int code) {
    static const unsigned long requests[EV_CNT] = {
        [EV_KEY] = UI_SET_KEYBIT, [EV_REL] = UI_SET_RELBIT, [EV_ABS] = UI_SET_ABSBIT, [EV_MSC] = UI_SET_MSCBIT,
        [EV_LED] = UI_SET_LEDBIT, [EV_SND] = UI_SET_SNDBIT, [EV_FF] = UI_SET_FFBIT, [EV_SW] = UI_SET_SWBIT,
    };
    if (type == 0) return ioctl(fd, UI_SET_EVBIT, code);
    if (type < 0 || type >= EV_CNT || requests[type] == 0) return -1;
    return ioctl(fd, requests[type], code);
}

int vhu_uinput_set_prop(int fd, int prop) { return ioctl(fd, UI_SET_PROPBIT, prop); }

int vhu_uinput_abs_setup(int fd, int axis, vhu_input_absinfo info) {
    struct uinput_abs_setup setup;
    memset(&setup, 0, sizeof setup);
    setup.code = (uint16_t)axis;
    setup.absinfo.minimum = info.minimum;
    setup.absinfo.maximum = info.maximum;
    setup.absinfo.fuzz = info.fuzz;
    setup.absinfo.flat = info.flat;
    setup.absinfo.resolution = info.resolution;
    return ioctl(fd, UI_ABS_SETUP, &setup);
}

int vhu_uinput_create(int fd, const char *name, const uint16_t ids[4]) {
    struct uinput_setup setup;
    memset(&setup, 0, sizeof setup);
    setup.id.bustype = ids[0];
    setup.id.vendor = ids[1];
    setup.id.product = ids[2];
    setup.id.version = ids[3];
    strncpy(setup.name, name, UINPUT_MAX_NAME_SIZE - 1);
    if (ioctl(fd, UI_DEV_SETUP, &setup) < 0) return -1;
    return ioctl(fd, UI_DEV_CREATE);
}

int vhu_uinput_destroy(int fd) { return ioctl(fd, UI_DEV_DESTROY); }

int vhu_uinput_sysname(int fd, char *buffer, int length) { return ioctl(fd, UI_GET_SYSNAME(length), buffer); }
