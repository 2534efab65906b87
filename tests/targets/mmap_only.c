/* Grows its memory without ever calling malloc: a bump allocator over mmap, as a program with its
 * own allocator (or an allocator leakhunt does not hook) would. With IDLE it allocates nothing at
 * all. Probes on malloc/free see nothing in both cases, and leakhunt must say so instead of
 * reporting a clean result.
 *
 *   mmap_only SECONDS [idle]
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    int idle = argc > 2 && strcmp(argv[2], "idle") == 0;
    const char ready[] = "ready\n";
    if (write(STDOUT_FILENO, ready, sizeof ready - 1) < 0) return 1;
    struct timespec step = {0, 100 * 1000 * 1000};
    for (int i = 0; i < (int)(seconds * 10); i++) {
        if (!idle) {
            char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return 1;
            memset(p, 1, CHUNK); /* touched: resident, anonymous, never unmapped */
        }
        nanosleep(&step, NULL);
    }
    return 0;
}
