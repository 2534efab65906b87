/* Cost of one malloc/free pair, for scripts/bench_probe_cost.py.
 *
 *   bench_alloc [SECONDS]     (default 5)
 *
 * Loops malloc(64)/free for SECONDS and prints, once per second, "ns_per_pair=N" for that second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    double start = now(), mark = start;
    long pairs = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (now() - start < seconds) {
        for (int i = 0; i < 1000; i++) {
            void *p = malloc(64);
            sink = p;
            free(p);
        }
        pairs += 1000;
        double t = now();
        if (t - mark >= 1.0) {
            printf("ns_per_pair=%.1f\n", (t - mark) * 1e9 / pairs);
            pairs = 0;
            mark = t;
        }
    }
    return 0;
}
