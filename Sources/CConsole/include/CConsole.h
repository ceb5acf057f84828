// What the console needs from Linux that Swift's Glibc module does not show: pseudo-terminals,
// signalfd, accept4.
#pragma once
#include <stddef.h>

/// Opens a new pseudo-terminal's master (non-blocking, close-on-exec, unlocked) and writes its
/// slave's path to `name`; returns the master descriptor, or -1 with errno set.
int vhu_console_open_pty(char *name, size_t size);

/// Blocks SIGWINCH in the calling thread and returns a non-blocking signalfd for it (-1: errno).
int vhu_console_window_signals(void);

/// Reads every signal pending on a signalfd; returns how many there were.
int vhu_console_drain_signals(int fd);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC; -1 with errno set when none waits.
int vhu_console_accept(int listener);
