#define _GNU_SOURCE
#include "CVhostUser.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// The guarded mappings. The signal handler reads them without a lock: a slot is published by storing
// its length last (release) and retired by storing 0 first, so the handler never sees a half-written one.
#define VHU_GUARD_SLOTS 256

struct guard_slot {
    _Atomic(uintptr_t) base;
    _Atomic(size_t) length;
    _Atomic(int) faulted;
};

static struct guard_slot slots[VHU_GUARD_SLOTS];
static _Atomic(uint64_t) fault_count;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;
static uintptr_t page_mask;

static void on_sigbus(int signo, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    int guarded = 0;
    // Every slot that holds the address is marked (a slot being retired concurrently may still match).
    for (int i = 0; i < VHU_GUARD_SLOTS; i++) {
        size_t length = atomic_load_explicit(&slots[i].length, memory_order_acquire);
        if (length == 0) continue;
        uintptr_t base = atomic_load_explicit(&slots[i].base, memory_order_relaxed);
        if (address < base || address - base >= length) continue;
        atomic_store_explicit(&slots[i].faulted, 1, memory_order_release);
        guarded = 1;
    }
    if (guarded) {
        // Replace the lost page: the faulting access is retried on return and completes on zeroes.
        void *start = (void *)(address & ~page_mask);
        if (mmap(start, (size_t)(page_mask + 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            atomic_fetch_add_explicit(&fault_count, 1, memory_order_release);
            return;
        }
    }
    // Not guest memory: a real bug. Give SIGBUS back to whoever had it before (or the default action)
    // and return: the faulting access runs again under that disposition. A SIGBUS sent by kill(2)
    // would not run again, so it is raised anew.
    sigaction(SIGBUS, &previous, NULL);
    if (info->si_code <= 0) raise(signo);
    (void)context;
}

static void install(void) {
    page_mask = (uintptr_t)sysconf(_SC_PAGESIZE) - 1;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous) != 0) install_error = errno;
}

int vhu_guard_install(void) {
    pthread_once(&install_once, install);
    return install_error;
}

int vhu_guard_register(void *base, size_t length) {
    if (vhu_guard_install() != 0 || length == 0) return -1;
    pthread_mutex_lock(&slots_lock);
    int found = -1;
    for (int i = 0; i < VHU_GUARD_SLOTS; i++) {
        if (atomic_load_explicit(&slots[i].length, memory_order_relaxed) == 0) { found = i; break; }
    }
    if (found >= 0) {
        atomic_store_explicit(&slots[found].faulted, 0, memory_order_relaxed);
        atomic_store_explicit(&slots[found].base, (uintptr_t)base, memory_order_relaxed);
        atomic_store_explicit(&slots[found].length, length, memory_order_release);
    }
    pthread_mutex_unlock(&slots_lock);
    return found;
}

void vhu_guard_unregister(int slot) {
    if (slot < 0 || slot >= VHU_GUARD_SLOTS) return;
    pthread_mutex_lock(&slots_lock);
    atomic_store_explicit(&slots[slot].length, 0, memory_order_release);
    pthread_mutex_unlock(&slots_lock);
}

int vhu_guard_faulted(int slot) {
    if (slot < 0 || slot >= VHU_GUARD_SLOTS) return 0;
    return atomic_load_explicit(&slots[slot].faulted, memory_order_acquire);
}

uint64_t vhu_guard_fault_count(void) { return atomic_load_explicit(&fault_count, memory_order_acquire); }
