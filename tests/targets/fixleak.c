/* A service with two leaks, in three builds, to test `leakhunt diff` (did the fix work?).
 *
 *   -DVERSION=1  (default) parse_request() and open_session() leak 1 KiB and 512 B per tick
 *   -DVERSION=2  parse_request() fixed, open_session() still leaks, and the fix added a new
 *                leak in log_request() (256 B per tick)
 *   -DVERSION=3  everything fixed: only a bounded cache (fill_cache) and transient buffers remain
 *
 * Usage: fixleak [SECONDS [CACHE_TICKS]]  (defaults 30 and 10). Ticks every 10 ms; the cache takes
 * one more slot every CACHE_TICKS ticks (1 = full within 0.64 s, before a probe can attach). Functions are noinline so that each
 * leak keeps its own frame in every build.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION 1
#endif

#define CACHE_SLOTS 64
static void *cache[CACHE_SLOTS];
static volatile unsigned long sink;
static int cache_ticks = 10;

__attribute__((noinline)) static char *parse_request(int i) {
    char *req = malloc(1024);
    memset(req, i & 0xff, 1024);
    return req;
}

__attribute__((noinline)) static void open_session(int i) {
    char *session = malloc(512);
    memset(session, i & 0xff, 512);
    sink += (unsigned long)session[7];
#if VERSION >= 3
    free(session);
#endif
}

__attribute__((noinline)) static void log_request(const char *req) {
    char *line = malloc(256);
    memcpy(line, req, 256);
    sink += (unsigned long)line[3];
#if VERSION != 2
    free(line);
#endif
}

__attribute__((noinline)) static void fill_cache(int i) {
    /* Bounded: one slot every cache_ticks ticks (~6 s to fill by default), then 128 KiB flat. */
    int slot = (i / cache_ticks) % CACHE_SLOTS;
    if (cache[slot] == NULL) cache[slot] = malloc(2048);
}

__attribute__((noinline)) static void handle(int i) {
    char *req = parse_request(i);
    log_request(req);
    open_session(i);
    fill_cache(i);
    char *tmp = malloc(4096); /* transient: freed at once */
    memset(tmp, 0, 4096);
    sink += (unsigned long)tmp[i % 4096];
    free(tmp);
#if VERSION >= 2
    free(req);
#else
    sink += (unsigned long)req[1];
#endif
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 30.0;
    if (argc > 2 && atoi(argv[2]) > 0) cache_ticks = atoi(argv[2]);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0;; i++) {
        handle(i);
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds) break;
    }
    return 0;
}
