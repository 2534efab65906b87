// A target whose leaks are reached through a known call chain, for the unwinding tests. Built three
// ways by the tests (-O2 with frame pointers, plain -O2 without them, and -O1 as everywhere else).
// Usage: unwind_leaker [SECONDS]: for SECONDS (default 8) every 100 ms it leaks 64 request buffers
// through main -> serve -> handle_request -> parse_request -> make_buffer (always inlined) -> malloc,
// and 16 names through
// main -> serve -> remember_name -> strdup, and 16 request lines through main -> serve -> log_request
// -> store_line -> malloc; a buffer that is freed at once is churn.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static char **names;
static size_t nnames;
volatile int sink;

// Inlined into parse_request: its malloc call is reported as make_buffer, inlined, then parse_request.
static inline __attribute__((always_inline)) char *make_buffer(int id) {
    return malloc(256 + (id & 7));  // LEAK: request buffer (never freed)
}

NOINLINE char *parse_request(int id) {
    char *buf = make_buffer(id);
    if (buf != NULL) {
        snprintf(buf, 256, "request-%d", id);
    }
    return buf;
}

NOINLINE int handle_request(int id) {
    char *req = parse_request(id);
    sink += req != NULL ? req[0] : 0;
    return id + 1;
}

NOINLINE void remember_name(int id) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "name-%d", id);
    char *copy = strdup(tmp);  // LEAK: strdup'ed name, kept forever
    names = realloc(names, (nnames + 1) * sizeof *names);
    names[nnames++] = copy;
}

// Built without frame pointers, %rbp holds `line` across the malloc call, so a frame-pointer walk
// reads the request text as return addresses (memleak prints e.g. 0x30302f6d65746920 [unknown]).
NOINLINE char *store_line(const char *line, size_t n) {
    char *copy = malloc(n + 1);  // LEAK: stored request line
    if (copy != NULL) {
        memcpy(copy, line, n);
        copy[n] = 0;
    }
    return copy;
}

NOINLINE void log_request(int id) {
    char line[64];
    int n = snprintf(line, sizeof line, "GET /item/%04d/detail HTTP/1.1", id % 9);
    sink += store_line(line, (size_t)n)[0];
}

NOINLINE void churn(int id) {
    char *p = malloc(512 + (id & 15));
    sink += p != NULL;
    free(p);
}

NOINLINE void serve(int round) {
    for (int i = 0; i < 64; i++) {
        handle_request(round * 64 + i);
        churn(i);
    }
    for (int i = 0; i < 16; i++) {
        remember_name(round * 16 + i);
        log_request(round * 16 + i);
    }
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 8;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    struct timespec pause_ts = {0, 100 * 1000 * 1000};
    for (int round = 0; round < seconds * 10; round++) {
        serve(round);
        nanosleep(&pause_ts, NULL);
    }
    printf("done %zu\n", nnames);
    fflush(stdout);
    pause();
    return 0;
}
