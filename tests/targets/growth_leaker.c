/* The target of growth mode's test: one stack keeps adding pages, decoys do not.
 *
 *   growth_leaker [SECONDS]     (default 15)
 *
 * - fill_cache(): at start, 4 MiB in 64 KiB blocks, written once and kept (a cache: it grows
 *   once, then stays: a plateau);
 * - churn(): every tick, a 1 KiB block written and freed again (reused from malloc's per-thread
 *   cache: faults once, then never). A larger block freed next to the top of the heap would merge
 *   back into it and its pages would go to the next allocation: growth mode would then name
 *   churn(), the first to touch them, as growing (the documented limit of counting first touches);
 * - leak_pages(): every tick (20 ms), a 16 KiB block written page by page by this function and
 *   never freed: ~800 KiB/s of new pages, touched here (the leak; rank 1 in growth mode).
 * Writes go through a volatile pointer so the compiler cannot turn them into a memset call (libc
 * has no frame pointers: the function that touched the page would be lost from the stack).
 */
#include "scan_common.h"

#define PAGE 4096

static void *volatile sink;
static char *cache[64];

/* Inlined on purpose: the page is touched by the function that owns the block (a shared helper
 * would be the innermost frame of every stack, and a tail call to it would hide its caller). */
#define TOUCH(ptr, n)                                \
    do {                                             \
        volatile char *t_ = (volatile char *)(ptr);  \
        for (size_t i_ = 0; i_ < (n); i_ += 512)     \
            t_[i_] = (char)i_;                       \
    } while (0)

__attribute__((noinline)) void fill_cache(void) {
    for (int i = 0; i < 64; i++) {
        cache[i] = malloc(64 * 1024);
        TOUCH(cache[i], 64 * 1024);
    }
}

__attribute__((noinline)) void churn(void) {
    char *p = malloc(1024);
    TOUCH(p, 1024);
    sink = p;
    free(p);
}

__attribute__((noinline)) void leak_pages(void) {
    char *p = malloc(4 * PAGE);
    TOUCH(p, 4 * PAGE);
    sink = p; /* never freed */
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 15;
    scan_target_init();
    setvbuf(stdout, NULL, _IOLBF, 0);
    fill_cache();
    long ticks = (long)(seconds * 50);
    for (long n = 0; n < ticks; n++) {
        churn();
        leak_pages();
        sleep_ms(20);
    }
    printf("done\n");
    return 0;
}
