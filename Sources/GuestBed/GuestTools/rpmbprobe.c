/*
 * rpmbprobe: what a guest user can learn about a virtio-rpmb device (virtio id 28) without a driver.
 * Finds the virtio-pci function 1af4:105c, walks its PCI capabilities for the virtio device-specific
 * configuration (VIRTIO_PCI_CAP_DEVICE_CFG, virtio 1.2, 4.1.4.6), maps that BAR through sysfs and
 * prints the virtio_rpmb_config fields as key=value lines:
 *   pci=0000:00:04.0 config_bar=4 config_offset=0x2000 capacity=3 max_wr_cnt=5 max_rd_cnt=9
 * Exits 1 with a message on stderr when there is no such device or its config cannot be read.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_RPMB_PCI_DEVICE (0x1040 + 28)
#define PCI_CAP_ID_VNDR 0x09
#define VIRTIO_PCI_CAP_DEVICE_CFG 4

static unsigned read_hex(const char *dir, const char *name) {
    char path[512], text[32] = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    return n > 0 ? (unsigned)strtoul(text, NULL, 16) : 0;
}

int main(void) {
    DIR *devices = opendir("/sys/bus/pci/devices");
    if (!devices) { perror("/sys/bus/pci/devices"); return 1; }
    struct dirent *entry;
    char dir[512] = {0};
    while ((entry = readdir(devices))) {
        if (entry->d_name[0] == '.') continue;
        char candidate[512];
        snprintf(candidate, sizeof candidate, "/sys/bus/pci/devices/%s", entry->d_name);
        if (read_hex(candidate, "vendor") == VIRTIO_VENDOR && read_hex(candidate, "device") == VIRTIO_RPMB_PCI_DEVICE) {
            strcpy(dir, candidate);
            printf("pci=%s\n", entry->d_name);
            break;
        }
    }
    closedir(devices);
    if (!dir[0]) { fprintf(stderr, "rpmbprobe: no virtio-rpmb PCI function (1af4:105c)\n"); return 1; }

    /* The standard 256-byte config header holds the capability list. */
    uint8_t config[256];
    char path[600];
    snprintf(path, sizeof path, "%s/config", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, config, sizeof config) < 64) { perror(path); return 1; }
    close(fd);
    int bar = -1;
    uint32_t offset = 0, length = 0;
    for (uint8_t cap = config[0x34] & 0xfc; cap && cap < 0xfc; cap = config[cap + 1] & 0xfc) {
        if (config[cap] == PCI_CAP_ID_VNDR && config[cap + 3] == VIRTIO_PCI_CAP_DEVICE_CFG) {
            bar = config[cap + 4];
            memcpy(&offset, &config[cap + 8], 4);
            memcpy(&length, &config[cap + 12], 4);
            break;
        }
    }
    if (bar < 0) { fprintf(stderr, "rpmbprobe: no device-config capability\n"); return 1; }
    printf("config_bar=%d\nconfig_offset=0x%x\nconfig_length=%u\n", bar, offset, length);

    snprintf(path, sizeof path, "%s/resource%d", dir, bar);
    fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) { perror(path); return 1; }
    long page = sysconf(_SC_PAGESIZE);
    off_t base = offset & ~(uint32_t)(page - 1);
    size_t span = (offset - base) + 3;
    volatile uint8_t *map = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, base);
    if (map == MAP_FAILED) { perror("mmap"); return 1; }
    volatile uint8_t *cfg = map + (offset - base);
    /* Byte reads: the transport forwards each to the back-end (GET_CONFIG). */
    printf("capacity=%u\nmax_wr_cnt=%u\nmax_rd_cnt=%u\n", cfg[0], cfg[1], cfg[2]);
    munmap((void *)map, span);
    close(fd);
    return 0;
}
