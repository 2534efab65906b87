/* A small program with one real leak and two decoys, used to produce the report fixtures
 * (tests/fixtures/reports/) and the hostile-target test (tests/integration/test_report_xss.py).
 *
 *   report_leaker [SECONDS] [ARGS...]
 *
 * - leak_request(): 512 bytes every 20 ms, never freed (~25 KiB/s): the leak;
 * - warm_cache(): 256 KiB in 64 blocks over one second starting at LEAKHUNT_CACHE_AT seconds
 *   (default 1), or when it receives SIGUSR1 (for a probe that attaches late), kept: a plateau;
 * - churn(): allocates and frees 4 KiB every 5 ms: transient.
 * Environment LEAKHUNT_COMM=NAME renames the process (prctl PR_SET_NAME, 15 bytes max): the
 * XSS test gives it hostile text. It prints "ready PID" once started and exits after SECONDS
 * (default 30). Arguments after SECONDS are ignored (the XSS test passes hostile ones).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;

__attribute__((noinline)) static void *leak_request(size_t n) {
    char *p = malloc(n);
    if (p) memset(p, 'r', n);
    return p;
}

/* volatile: a cache nobody reads would be optimised away, and with it the plateau. */
static void *volatile cache[64];

__attribute__((noinline)) static void warm_cache(int i) {
    cache[i] = malloc(4096);
    if (cache[i]) memset(cache[i], 'c', 4096);
}

__attribute__((noinline)) static void churn(void) {
    char *p = malloc(4096);
    if (p) memset(p, 't', 4096);
    sink = p;
    free(p);
}

static volatile sig_atomic_t warm_now;

static void on_usr1(int sig) {
    (void)sig;
    warm_now = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 30.0;
    const char *comm = getenv("LEAKHUNT_COMM");
    if (comm && *comm) prctl(PR_SET_NAME, comm, 0, 0, 0);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    double start = now(), next_leak = start;
    const char *cache_at_env = getenv("LEAKHUNT_CACHE_AT");
    double cache_at = cache_at_env ? atof(cache_at_env) : 1.0;
    int cached = 0;
    signal(SIGUSR1, on_usr1);
    while (now() - start < seconds) {
        double t = now();
        if (warm_now) {
            warm_now = 0;
            cache_at = t - start;
        }
        if (cached < 64 && t - start >= cache_at + cached / 64.0) warm_cache(cached++);
        if (t >= next_leak) {
            sink = leak_request(512);
            next_leak += 0.02;
        }
        churn();
        usleep(5000);
    }
    return 0;
}
