/* Allocates at the very first statement of main, then lives a few seconds and exits with 7.
 * `leakhunt run` must count those first allocations (the command is gated until the probes are
 * attached) and report the exit status.
 *
 *   first_alloc [SECONDS]      (default 3)
 */
#include <stdlib.h>
#include <unistd.h>

#define FIRST_SIZE 12345
#define FIRST_COUNT 7

static void *volatile sink;
static void *kept[FIRST_COUNT];

__attribute__((noinline)) void first_leak(void) {
    for (int i = 0; i < FIRST_COUNT; i++) {
        kept[i] = malloc(FIRST_SIZE);
        sink = kept[i];
    }
}

int main(int argc, char **argv) {
    first_leak();
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    usleep((useconds_t)(seconds * 1000000));
    return 7;
}
