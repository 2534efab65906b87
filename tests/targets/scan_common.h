/* Shared by the scan_*.c scenario targets: die with the parent (the test or benchmark that started
 * us) and never outlive a time limit, so a crashed test run leaves no leaking process behind. */
#ifndef SCAN_COMMON_H
#define SCAN_COMMON_H
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static inline void scan_target_init(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(600);
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* malloc and touch every page, so the bytes count in RSS (untouched pages are not resident). */
static inline void *alloc_touched(size_t n) {
    char *p = malloc(n);
    if (p) memset(p, 0x5a, n);
    return p;
}
#endif
