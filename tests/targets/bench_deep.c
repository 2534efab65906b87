/* Cost of one malloc/free pair with the allocating loop DEPTH frames deep, for
 * scripts/bench_unwind_cost.py (the native probe's DWARF key scans the top 2 KiB of the stack and a
 * frame-pointer walk follows every frame, so both grow with depth).
 *
 *   bench_deep [SECONDS] [DEPTH]     (defaults 5 and 0; each level holds a 64-byte local)
 *
 * Prints "ns_per_pair=N" once per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static void *volatile sink;
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
__attribute__((noinline)) static void loop(double seconds) {
    double start = now(), mark = start; long pairs = 0;
    while (now() - start < seconds) {
        for (int i = 0; i < 1000; i++) { void *p = malloc(64); sink = p; free(p); }
        pairs += 1000;
        double t = now();
        if (t - mark >= 1.0) { printf("ns_per_pair=%.1f\n", (t - mark) * 1e9 / pairs); fflush(stdout); mark = t; pairs = 0; }
    }
}
__attribute__((noinline)) static int nest(int depth, double seconds) {
    volatile char pad[64];
    memset((char *)pad, depth, sizeof pad);
    if (depth > 0) return nest(depth - 1, seconds) + pad[3];
    loop(seconds);
    return 0;
}
int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5; int depth = argc > 2 ? atoi(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    return nest(depth, seconds);
}
