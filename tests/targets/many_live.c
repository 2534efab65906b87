/* Holds many small blocks at once: fills a small probe map (leakhunt run --map-keys 1024).
 *
 *   many_live [COUNT] [SECONDS]     (default 5000 blocks, kept 3 s)
 */
#include <stdlib.h>
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

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 5000;
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    hold_blocks(count);
    usleep((useconds_t)(seconds * 1000000));
    return 0;
}
