/* A leaky program with decoys, for `leakhunt investigate` and `run` tests.
 *
 *   leak_mix [--wait-signal] [SECONDS]
 *
 * Every 50 ms tick:
 *   leaky_alloc  512 B never freed: a small steady leak (~10 KiB/s)       -> the one real leak
 *   cache_fill   100 KiB per tick for the first 40 ticks, then kept: a 4 MiB cache built once
 *   lru_put      4 KiB entry into a 32-entry LRU, 2 per tick, oldest freed when full (128 KiB)
 *   churn        50 blocks of 16..4111 B allocated and freed within the tick
 * With --wait-signal nothing is allocated until SIGUSR1 arrives (so a probe that attaches to the
 * running process sees the cache being built). Runs SECONDS (default 60), then exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_US 50000
#define CACHE_TICKS 40
#define CACHE_CHUNK (100 * 1024)
#define LRU_SIZE 32
#define LRU_ENTRY 4096
#define CHURN 50

static void *volatile sink;  /* keeps the compiler from dropping allocations */
static void *leaked[100000];
static size_t n_leaked;
static void *cache[CACHE_TICKS];
static void *lru[LRU_SIZE];
static size_t lru_next;
static volatile sig_atomic_t go;

static void on_usr1(int sig) { (void)sig; go = 1; }

__attribute__((noinline)) void leaky_alloc(void) {
    char *p = malloc(512);
    memset(p, 'L', 512);
    if (n_leaked < sizeof leaked / sizeof leaked[0])
        leaked[n_leaked++] = p; /* never freed */
    sink = p;
}

__attribute__((noinline)) void cache_fill(int tick) {
    if (tick < CACHE_TICKS) {
        cache[tick] = malloc(CACHE_CHUNK);
        memset(cache[tick], 'C', CACHE_CHUNK);
        sink = cache[tick];
    }
}

__attribute__((noinline)) void lru_put(void) {
    size_t slot = lru_next++ % LRU_SIZE;
    free(lru[slot]); /* evict the oldest entry */
    lru[slot] = malloc(LRU_ENTRY);
    memset(lru[slot], 'R', LRU_ENTRY);
    sink = lru[slot];
}

__attribute__((noinline)) void churn(unsigned *seed) {
    void *tmp[CHURN];
    for (int i = 0; i < CHURN; i++) {
        tmp[i] = malloc(16 + rand_r(seed) % 4096);
        sink = tmp[i];
    }
    for (int i = 0; i < CHURN; i++)
        free(tmp[i]);
}

int main(int argc, char **argv) {
    int wait_signal = 0;
    double seconds = 60;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait-signal") == 0)
            wait_signal = 1;
        else
            seconds = atof(argv[i]);
    }
    signal(SIGUSR1, on_usr1);
    if (wait_signal) {
        printf("waiting for SIGUSR1\n");
        fflush(stdout);
        while (!go)
            pause();
    }
    unsigned seed = 42;
    long ticks = (long)(seconds * 1000000 / TICK_US);
    for (long tick = 0; tick < ticks; tick++) {
        leaky_alloc();
        cache_fill((int)tick);
        lru_put();
        lru_put();
        churn(&seed);
        usleep(TICK_US);
    }
    return 0;
}
