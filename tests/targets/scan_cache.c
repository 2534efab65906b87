/* A cache that fills to MIB mebibytes at 1 MiB/s, then stays full: each new entry evicts the oldest.
 * usage: scan_cache [MIB]   -- expected scan verdict: plateau */
#include "scan_common.h"

#define ENTRY (64 * 1024)
#define MAX_ENTRIES 4096

int main(int argc, char **argv) {
    scan_target_init();
    long mib = argc > 1 ? atol(argv[1]) : 8;
    long capacity = mib * 1024 * 1024 / ENTRY;
    if (capacity > MAX_ENTRIES) capacity = MAX_ENTRIES;
    static void *entries[MAX_ENTRIES];
    long next = 0, filled = 0;
    printf("ready cache of %ld MiB\n", mib);
    fflush(stdout);
    for (;;) {
        /* 16 entries of 64 KiB every 1 s = 1 MiB/s while filling. */
        for (int i = 0; i < 16; i++) {
            if (filled == capacity) free(entries[next]);
            else filled++;
            entries[next] = alloc_touched(ENTRY);
            next = (next + 1) % capacity;
        }
        sleep_ms(1000);
    }
}
