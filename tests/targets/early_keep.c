/* Allocations right after exec: 256 blocks kept from one call site in the first ~0.3 s, among
 * short-lived blocks whose pointers sit on the stack (data words that look like addresses).
 * Usage: early_keep (then it waits to be stopped). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char *kept[256];

__attribute__((noinline)) static void churn(int i) {
    void *p[64];
    for (int k = 0; k < 64; k++) p[k] = malloc(16 + (size_t)((k + i) % 64) * 8);
    for (int k = 0; k < 64; k++) free(p[k]);
}

__attribute__((noinline)) static void keep_block(int i) {
    kept[i] = malloc(4096); /* KEPT: one block per round, never freed */
    kept[i][0] = (char)i;
}

int main(void) {
    for (int i = 0; i < 256; i++) {
        churn(i);
        keep_block(i);
        usleep(1000);
    }
    long sum = 0;
    for (int i = 0; i < 256; i++) sum += kept[i][0];
    printf("ready %d %ld\n", (int)getpid(), sum);
    fflush(stdout);
    pause();
}
