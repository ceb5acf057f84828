// What the fuzz harnesses need from C: AddressSanitizer's manual poisoning (so a kit pointer into the
// part of a mapping that is not guest memory faults at once) and memfd_create and
// fallocate (Swift's Glibc lacks them).
#ifndef CFUZZSHIM_H
#define CFUZZSHIM_H

#include <stddef.h>

/// Marks `size` bytes at `address` unaddressable for AddressSanitizer.
void __asan_poison_memory_region(void const volatile *address, size_t size);

/// memfd_create(2) with MFD_CLOEXEC: an anonymous file of `size` bytes, or -1.
int fuzz_memfd(const char *name, size_t size);

/// Zeroes the first `size` bytes of a memfd by punching a hole (only pages in use cost anything).
/// Returns 0 or -1.
int fuzz_zero_file(int fd, size_t size);

#endif
