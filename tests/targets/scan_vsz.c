/* Grows only its address space: reserves 8 MiB of PROT_NONE mappings ten times a second and never
 * touches them, so VSZ climbs by 80 MiB/s while RSS stays put.
 * usage: scan_vsz   -- expected scan verdict: stable, with the address-space growth flag */
#include <sys/mman.h>

#include "scan_common.h"

int main(void) {
    scan_target_init();
    printf("ready reserving address space\n");
    fflush(stdout);
    for (;;) {
        void *p = mmap(NULL, 8 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        sleep_ms(100);
    }
}
