/* Many short-lived stacks at start-up, then one leak (the shape of an interpreter's start-up:
 * thousands of call paths that allocate and free, before the program's steady work).
 *
 *   startup_churn [SECONDS]     (default 6)
 *
 * Start-up: every path through 12 levels of calls, each one of two (4,096 distinct stacks),
 * allocates 32 B in churn_leaf and frees it at once, three times over, except path 0, which keeps
 * its block. Then for SECONDS: leak_after_startup keeps 4 KiB every 10 ms, and path 0 keeps one
 * more block every 100 ms (the same stack as at start-up). The program exits without freeing them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LEVELS 12

static void *volatile sink;

static int volatile keep_next;
static unsigned kept;

__attribute__((noinline)) static void churn_leaf(void) {
    void *p = malloc(32);
    memset(p, 1, 32);
    sink = p;
    if (keep_next)
        kept++; /* kept for good */
    else
        free(p);
}

static unsigned volatile visits_a, visits_b;
static void walk_a(int depth, unsigned path);
static void walk_b(int depth, unsigned path);

/* Two functions that call each other or themselves as the path's bits say: each level's return
 * address tells which of the four calls it was. Each counts its visits in its own variable, so
 * that the compiler cannot fold them into one function. */
#define WALK(name, visits)                                                   \
    __attribute__((noinline)) static void name(int depth, unsigned path) {   \
        visits++;                                                            \
        if (depth == LEVELS) {                                               \
            churn_leaf();                                                    \
            return;                                                          \
        }                                                                    \
        if (path & (1u << depth))                                            \
            walk_a(depth + 1, path);                                         \
        else                                                                 \
            walk_b(depth + 1, path);                                         \
        __asm__ volatile("" ::: "memory"); /* not a tail call: frames stay */ \
    }
WALK(walk_a, visits_a)
WALK(walk_b, visits_b)

__attribute__((noinline)) void leak_after_startup(void) {
    void *p = malloc(4096);
    memset(p, 2, 4096);
    sink = p; /* never freed */
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 6;
    struct timespec start = {0}, now;
    /* one loop, so that path 0 is called from the same place in both phases (the same stack) */
    for (unsigned i = 0;; i++) {
        unsigned path = i < 3u << LEVELS ? i % (1u << LEVELS) : 0;
        keep_next = path == 0 && (i < 3u << LEVELS || i % 10 == 0);
        walk_a(0, path);
        if (i < 3u << LEVELS)
            continue;
        if (start.tv_sec == 0)
            clock_gettime(CLOCK_MONOTONIC, &start);
        leak_after_startup();
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
            break;
    }
    return kept > 0 ? 0 : 1;
}
