/* The demo target of scripts/demo.sh: a toy request server with one real leak.
 *
 *   demo_leaky [SECONDS]     (default 30)
 *
 * Each 20 ms "request" is parsed; a malformed one (1 in 4) takes an error path that forgets to
 * free the copied header (parse_header -> strdup: the leak, ~1.5 KiB/s). A routing table is
 * loaded once at start (1 MiB: a big but stable cache) and a response buffer pool is recycled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile sink;
static char *routes[256];
static char *pool[8];

__attribute__((noinline)) void load_routes(void) {
    for (int i = 0; i < 256; i++) {
        routes[i] = malloc(4096);
        memset(routes[i], 'r', 4096);
    }
}

__attribute__((noinline)) char *parse_header(const char *raw) {
    char *copy = malloc(strlen(raw) + 1);
    strcpy(copy, raw);
    sink = copy;
    return copy;
}

__attribute__((noinline)) int handle_request(int n) {
    char raw[128];
    snprintf(raw, sizeof raw, "GET /item/%d HTTP/1.1 X-Trace: %08d-padding-padding-padding", n, n * 7);
    char *header = parse_header(raw);
    if (n % 4 == 0)
        return -1; /* BUG: malformed request, header copy leaked */
    char *buf = pool[n % 8];
    pool[n % 8] = realloc(buf, 2048 + (size_t)(n % 3) * 512);
    free(header);
    return 0;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 30;
    load_routes();
    long requests = (long)(seconds * 50);
    for (long n = 0; n < requests; n++) {
        handle_request((int)n);
        usleep(20000);
    }
    return 0;
}
