/* Leaks KIB kibibytes a second, in ten heap blocks a second that are never freed.
 * usage: scan_leak KIB   -- expected scan verdict: leak-suspect */
#include "scan_common.h"

/* Not inlined, so that an investigation names it as the leaking stack's allocating function. */
__attribute__((noinline)) static void *leak_block(size_t n) { return alloc_touched(n); }

int main(int argc, char **argv) {
    scan_target_init();
    long kib = argc > 1 ? atol(argv[1]) : 256;
    size_t per_tick = (size_t)kib * 1024 / 10;
    printf("ready leaking %ld KiB/s\n", kib);
    fflush(stdout);
    for (;;) {
        void *volatile p = leak_block(per_tick);
        (void)p;
        sleep_ms(100);
    }
}
