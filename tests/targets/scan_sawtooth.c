/* Sawtooth: grows by 2 MiB/s to 8 MiB, frees it all, again and again (blocks of 256 KiB, above
 * a fixed mmap threshold, so a free really returns the pages: with glibc's default dynamic
 * threshold the teeth would move to the heap after the first free and, interleaved with the
 * leaked blocks, never be given back). With FLOOR_KIB > 0 it also leaks that
 * many KiB a second that are never freed, so the troughs rise.
 * usage: scan_sawtooth [FLOOR_KIB]   -- expected verdict: sawtooth (0) / leak-suspect (> 0) */
#include <malloc.h>

#include "scan_common.h"

#define BLOCK (256 * 1024)
#define TEETH 32 /* 32 x 256 KiB = 8 MiB */

int main(int argc, char **argv) {
    scan_target_init();
    long floor_kib = argc > 1 ? atol(argv[1]) : 0;
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    void *blocks[TEETH];
    printf("ready sawtooth, floor leak %ld KiB/s\n", floor_kib);
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < TEETH; i++) {
            blocks[i] = alloc_touched(BLOCK);
            if (floor_kib > 0 && i % 2 == 1) {
                void *volatile leak = alloc_touched((size_t)floor_kib * 1024 / 4);
                (void)leak;
            }
            sleep_ms(125);
        }
        for (int i = 0; i < TEETH; i++) free(blocks[i]);
    }
}
