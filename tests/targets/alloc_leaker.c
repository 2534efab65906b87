/* A leak that must be found whatever allocator the program is linked with (or preloaded with):
 * jemalloc, tcmalloc, mimalloc or glibc. Usage: alloc_leaker [SECONDS] [KIB_PER_TICK]
 * Every 100 ms for SECONDS (default 10): leak_in_c() keeps KIB_PER_TICK (default 10) KiB in 512-byte
 * blocks and never frees them; churn() allocates and frees (malloc, calloc, realloc,
 * posix_memalign, aligned_alloc) so that frees through every path are matched.
 * Prints "ready PID" first; after the run it waits (pause) so that its stacks stay symbolisable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *kept[1 << 20];
static size_t nkept;

__attribute__((noinline)) void leak_in_c(int kib) {
    for (int i = 0; i < kib * 2; i++) {
        char *p = malloc(512);
        memset(p, 'L', 512);
        if (nkept < sizeof kept / sizeof kept[0]) kept[nkept++] = p;
    }
}

__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < 40; i++) {
        char *p = malloc(64 + (size_t)i * 8);
        memset(p, 0, 64);
        free(p);
    }
    char *q = calloc(8, 100);
    q = realloc(q, 4000);
    free(q);
    void *a = NULL;
    if (posix_memalign(&a, 64, 3000) == 0) free(a);
    free(aligned_alloc(256, 1024));
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    int kib = argc > 2 ? atoi(argv[2]) : 10;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (int tick = 0; tick < seconds * 10; tick++) {
        leak_in_c(kib);
        churn();
        usleep(100000);
    }
    printf("done %zu\n", nkept);
    fflush(stdout);
    pause();
    return 0;
}
