/* Two call chains that reach one malloc call at the same stack pointer, for the native backend's
 * call-site stack cache (--unwind dwarf): main -> keep_one -> alloc_here -> malloc leaks, and
 * main -> drop_one -> alloc_here -> malloc is freed at once. Both callers have the same frame, so
 * malloc returns into alloc_here at the same stack pointer from either; only the return address into
 * keep_one or drop_one, further up the stack, tells the two apart. Calls alternate.
 *
 *   same_site [SECONDS]    prints "frames same" (or "frames differ": the compiler gave the two callers
 *                          different frames) and "kept=BYTES", then sleeps SECONDS (default 10)
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define N 5000
#define SIZE 200

void *kept[N];  // not static: the stores stay
static void *volatile sink;
static volatile int last;
static void *frame_of[2];

NOINLINE void *alloc_here(int who) {
    frame_of[who] = __builtin_frame_address(0);
    return malloc(SIZE);  // LEAK when called from keep_one
}

NOINLINE void keep_one(int i) {
    kept[i] = alloc_here(0);
    last = i;
}

NOINLINE void drop_one(int i) {
    void *p = alloc_here(1);
    sink = p;
    free(p);
    last = i;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    for (int i = 0; i < N; i++) {
        keep_one(i);
        drop_one(i);
    }
    printf("frames %s\nkept=%d\n", frame_of[0] == frame_of[1] ? "same" : "differ", N * SIZE);
    fflush(stdout);
    usleep((useconds_t)(seconds * 1000000));
    return 0;
}
