/* Allocates at the very first statement of main, then lives a few seconds and exits with 7.
 * `leakhunt run` must count those first allocations (the command is gated until the probes are
 * attached) and report the exit status.
 *
 *   first_alloc [SECONDS] [reallocarray]      (default 3 s; malloc)
 *
 * With "reallocarray" the same 7 blocks of 12,345 bytes come from reallocarray(3) (5 x 2,469): even
 * ones from a NULL array, odd ones by growing a block of 100 bytes that realloc releases. glibc's
 * reallocarray calls realloc, which may call malloc: each block must be counted once, and the
 * 100-byte blocks not at all (they are freed).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIRST_SIZE 12345
#define FIRST_COUNT 7

static void *volatile sink;
static void *kept[FIRST_COUNT];

__attribute__((noinline)) void first_leak(int array) {
    for (int i = 0; i < FIRST_COUNT; i++) {
        if (array) {
            void *old = i % 2 ? malloc(100) : NULL;
            kept[i] = reallocarray(old, 5, FIRST_SIZE / 5);
        } else {
            kept[i] = malloc(FIRST_SIZE);
        }
        sink = kept[i];
    }
}

int main(int argc, char **argv) {
    first_leak(argc > 2 && strcmp(argv[2], "reallocarray") == 0);
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    usleep((useconds_t)(seconds * 1000000));
    return 7;
}
