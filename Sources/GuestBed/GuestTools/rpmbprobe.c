/*
 * rpmbprobe: what a guest user can learn about a virtio-rpmb device (virtio id 28) without a driver.
 * Finds the virtio-pci function 1af4:105c and reads, through the PCI configuration access capability
 * (VIRTIO_PCI_CAP_PCI_CFG, virtio 1.2, 4.1.4.9), the device's feature bits from its common
 * configuration and struct virtio_rpmb_config from its device-specific configuration. The window goes
 * through the function's config space (/sys/bus/pci/devices/X/config), so it works while virtio-pci
 * holds the BARs (the kernel refuses to mmap a BAR a driver has claimed). Prints key=value lines:
 *   pci=0000:00:01.0 config_bar=4 config_offset=0x2000 config_length=4096
 *   device_features=0x0000000130000000 num_queues=1 capacity=3 max_wr_cnt=5 max_rd_cnt=9
 * Exits 1 with a message on stderr when there is no such device or its configuration cannot be read.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_RPMB_PCI_DEVICE (0x1040 + 28)
#define PCI_CAP_ID_VNDR 0x09
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5
/* struct virtio_pci_cap field offsets, and the data window after it in struct virtio_pci_cfg_cap. */
#define CAP_CFG_TYPE 3
#define CAP_BAR 4
#define CAP_OFFSET 8
#define CAP_LENGTH 12
#define CAP_PCI_CFG_DATA 16
/* struct virtio_pci_common_cfg field offsets. */
#define COMMON_DEVICE_FEATURE_SELECT 0
#define COMMON_DEVICE_FEATURE 4
#define COMMON_NUM_QUEUES 18

struct region { int bar; uint32_t offset, length; };

static int config_fd = -1;
static unsigned window; /* config-space offset of the VIRTIO_PCI_CAP_PCI_CFG capability */

static unsigned read_hex(const char *dir, const char *name) {
    char path[512], text[32] = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    return n > 0 ? (unsigned)strtoul(text, NULL, 16) : 0;
}

static void fail(const char *what) {
    fprintf(stderr, "rpmbprobe: %s\n", what);
    exit(1);
}

static void config_write(unsigned at, const void *bytes, size_t count) {
    if (pwrite(config_fd, bytes, count, at) != (ssize_t)count) fail("cannot write the PCI config space");
}

/* Points the window at `count` (1, 2 or 4) bytes at `offset` in `bar`. */
static void aim(int bar, uint32_t offset, uint32_t count) {
    uint8_t b = (uint8_t)bar;
    config_write(window + CAP_BAR, &b, 1);
    config_write(window + CAP_OFFSET, &offset, 4);
    config_write(window + CAP_LENGTH, &count, 4);
}

/* Reads `count` bytes of a BAR through the window (the device performs the access when the data is read). */
static uint32_t bar_read(int bar, uint32_t offset, uint32_t count) {
    aim(bar, offset, count);
    uint32_t value = 0;
    if (pread(config_fd, &value, 4, window + CAP_PCI_CFG_DATA) != 4) fail("cannot read the PCI config space");
    return count == 4 ? value : value & ((1u << (8 * count)) - 1);
}

static void bar_write32(int bar, uint32_t offset, uint32_t value) {
    aim(bar, offset, 4);
    config_write(window + CAP_PCI_CFG_DATA, &value, 4);
}

/* The directory of the first virtio-rpmb PCI function, or exits. */
static void find_device(char *dir, size_t size) {
    DIR *devices = opendir("/sys/bus/pci/devices");
    if (!devices) fail("no /sys/bus/pci/devices");
    struct dirent *entry;
    dir[0] = 0;
    while ((entry = readdir(devices))) {
        if (entry->d_name[0] == '.') continue;
        snprintf(dir, size, "/sys/bus/pci/devices/%s", entry->d_name);
        if (read_hex(dir, "vendor") == VIRTIO_VENDOR && read_hex(dir, "device") == VIRTIO_RPMB_PCI_DEVICE) {
            printf("pci=%s\n", entry->d_name);
            closedir(devices);
            return;
        }
    }
    closedir(devices);
    fail("no virtio-rpmb PCI function (1af4:105c)");
}

int main(void) {
    char dir[512], path[600];
    find_device(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config", dir);
    config_fd = open(path, O_RDWR);
    uint8_t config[256];
    if (config_fd < 0 || pread(config_fd, config, sizeof config, 0) != (ssize_t)sizeof config) {
        perror(path);
        return 1;
    }
    struct region common = {-1, 0, 0}, device = {-1, 0, 0};
    for (uint8_t cap = config[0x34] & 0xfc; cap && cap < 0xfc; cap = config[cap + 1] & 0xfc) {
        if (config[cap] != PCI_CAP_ID_VNDR) continue;
        struct region found = {config[cap + CAP_BAR], 0, 0};
        memcpy(&found.offset, &config[cap + CAP_OFFSET], 4);
        memcpy(&found.length, &config[cap + CAP_LENGTH], 4);
        switch (config[cap + CAP_CFG_TYPE]) {
        case VIRTIO_PCI_CAP_COMMON_CFG: if (common.bar < 0) common = found; break;
        case VIRTIO_PCI_CAP_DEVICE_CFG: if (device.bar < 0) device = found; break;
        case VIRTIO_PCI_CAP_PCI_CFG: if (!window) window = cap; break;
        }
    }
    if (common.bar < 0 || device.bar < 0) fail("no common or device-config capability");
    if (!window) fail("no PCI configuration access capability");
    printf("config_bar=%d\nconfig_offset=0x%x\nconfig_length=%u\n", device.bar, device.offset, device.length);

    bar_write32(common.bar, common.offset + COMMON_DEVICE_FEATURE_SELECT, 1);
    uint64_t features = (uint64_t)bar_read(common.bar, common.offset + COMMON_DEVICE_FEATURE, 4) << 32;
    bar_write32(common.bar, common.offset + COMMON_DEVICE_FEATURE_SELECT, 0);
    features |= bar_read(common.bar, common.offset + COMMON_DEVICE_FEATURE, 4);
    printf("device_features=0x%016llx\n", (unsigned long long)features);
    printf("num_queues=%u\n", bar_read(common.bar, common.offset + COMMON_NUM_QUEUES, 2));

    /* struct virtio_rpmb_config { u8 capacity; u8 max_wr_cnt; u8 max_rd_cnt; }: byte reads, each
     * forwarded to the back-end (GET_CONFIG). */
    printf("capacity=%u\n", bar_read(device.bar, device.offset + 0, 1));
    printf("max_wr_cnt=%u\n", bar_read(device.bar, device.offset + 1, 1));
    printf("max_rd_cnt=%u\n", bar_read(device.bar, device.offset + 2, 1));
    close(config_fd);
    return 0;
}
