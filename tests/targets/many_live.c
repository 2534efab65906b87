/* Holds many small blocks at once: fills a small probe map (leakhunt run --map-keys 1024).
 *
 *   many_live [COUNT] [SECONDS] [CHURN]     (default 5000 blocks, kept 3 s, no churn)
 *
 * With CHURN = 1 it then allocates and frees 64 B blocks in churn_blocks() while it holds the
 * others (about 2,000 pairs a second): nothing of it stays outstanding, but a probe whose map is
 * full cannot track those blocks, and must not take them for a leak.
 */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;

__attribute__((noinline)) void hold_blocks(long count) {
    void **blocks = malloc(sizeof(void *) * (size_t)count);
    for (long i = 0; i < count; i++) {
        blocks[i] = malloc(32);
        sink = blocks[i];
    }
    sink = blocks;
}

__attribute__((noinline)) void churn_blocks(void) {
    for (int i = 0; i < 20; i++) {
        void *p = malloc(64);
        sink = p;
        free(p);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 5000;
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    int churn = argc > 3 ? atoi(argv[3]) : 0;
    hold_blocks(count);
    if (!churn) {
        usleep((useconds_t)(seconds * 1000000));
        return 0;
    }
    double end = now() + seconds;
    while (now() < end) {
        churn_blocks();
        usleep(10000);
    }
    return 0;
}
