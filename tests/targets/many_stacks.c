/* Allocates from 500 distinct call stacks, for long-run benchmarks (scripts/bench_long_runs.py).
 *
 *   many_stacks [SECONDS]     (default 600)
 *
 * Every 100 ms, for each of 10 leaf functions and each recursion depth 1..50 (500 stacks): one
 * block of 64 B. Leaf 0 keeps one block in 10 and frees the others (50 leaking stacks of 64 B/s,
 * 30,000 blocks in 10 minutes: below the probe's map size); the others keep a ring of 8 blocks per
 * stack (a plateau) and free the oldest.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 50
#define LEAVES 10
#define RING 8

static void *ring[LEAVES][DEPTH + 1][RING];
static unsigned next_slot[LEAVES][DEPTH + 1];
static void *volatile sink;

static void keep(int leaf, int depth, void *p) {
    if (leaf == 0) {
        if (next_slot[0][depth]++ % 10 == 0)
            sink = p;  /* leaked */
        else
            free(p);
        return;
    }
    unsigned i = next_slot[leaf][depth]++ % RING;
    free(ring[leaf][depth][i]);
    ring[leaf][depth][i] = p;
}

#define LEAF(n) \
    __attribute__((noinline)) void leaf_##n(int depth) { \
        void *p = malloc(64); \
        memset(p, n, 64); \
        keep(n, depth, p); \
    }
LEAF(0) LEAF(1) LEAF(2) LEAF(3) LEAF(4) LEAF(5) LEAF(6) LEAF(7) LEAF(8) LEAF(9)

static void (*const leaves[LEAVES])(int) = {leaf_0, leaf_1, leaf_2, leaf_3, leaf_4,
                                            leaf_5, leaf_6, leaf_7, leaf_8, leaf_9};

__attribute__((noinline)) void descend(int leaf, int depth, int left) {
    if (left == 0) {
        leaves[leaf](depth);
        return;
    }
    descend(leaf, depth, left - 1);
    __asm__ volatile("" ::: "memory");  /* not a tail call: every level keeps its frame */
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 600;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        for (int leaf = 0; leaf < LEAVES; leaf++)
            for (int depth = 1; depth <= DEPTH; depth++)
                descend(leaf, depth, depth - 1);
        usleep(100000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
            break;
    }
    return 0;
}
