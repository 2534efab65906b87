/* A known amount of leaked memory, for the sampling test of the native backend (--sample-bytes).
 *
 *   sample_leak [SECONDS]      (default 20)
 *
 * Right away: leaks SMALL_N blocks of SMALL_SIZE and BIG_N blocks of BIG_SIZE bytes (known totals,
 * printed), and allocates and frees CHURN_N blocks (whose bytes must not count), then sleeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SMALL_N 20000
#define SMALL_SIZE 1000
#define BIG_N 200
#define BIG_SIZE 100000
#define CHURN_N 50000

static void *volatile sink;

__attribute__((noinline)) void leak_small(void) {
    for (int i = 0; i < SMALL_N; i++) sink = malloc(SMALL_SIZE);
}

__attribute__((noinline)) void leak_big(void) {
    for (int i = 0; i < BIG_N; i++) sink = malloc(BIG_SIZE);
}

__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < CHURN_N; i++) {
        void *p = malloc(SMALL_SIZE);
        sink = p;
        free(p);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 20;
    leak_small();
    churn();
    leak_big();
    printf("leaked small=%d big=%d\n", SMALL_N * SMALL_SIZE, BIG_N * BIG_SIZE);
    fflush(stdout);
    usleep((useconds_t)(seconds * 1000000));
    return 0;
}
