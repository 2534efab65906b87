/* Holds steady: 4 MiB allocated at start, then malloc/free churn of small blocks forever.
 * usage: scan_steady   -- expected scan verdict: stable */
#include "scan_common.h"

int main(void) {
    scan_target_init();
    void *base = alloc_touched(4 << 20);
    printf("ready %p\n", base);
    fflush(stdout);
    for (;;) {
        void *blocks[64];
        for (int i = 0; i < 64; i++) blocks[i] = alloc_touched(1024 + i * 64);
        for (int i = 0; i < 64; i++) free(blocks[i]);
        sleep_ms(100);
    }
}
