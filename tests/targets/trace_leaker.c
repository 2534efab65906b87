/* A target for `leakhunt trace` that knows exactly what it leaks.
 *
 * Usage: trace_leaker [ROUNDS] [START_DELAY_MS] [EXIT] [FORK]
 *   Starts its worker threads, warms up every thread's malloc arena (so the traced window holds no
 *   allocator bookkeeping), prints "ready PID", then waits for SIGUSR1 (or START_DELAY_MS > 0 ms).
 *   Then each of 3 threads (main + 2 workers) runs ROUNDS rounds of malloc/calloc/realloc/free and
 *   keeps some blocks on purpose. Each kept block is printed as "leak 0xADDR SIZE TID", followed by
 *   "leaked COUNT BYTES" and "done". Output is written with write(2) from stack buffers, so reporting
 *   allocates nothing. Then it sleeps until killed (a traced pid must stay alive to be symbolised),
 *   or, when EXIT is 1, exits with status 0.
 *   With FORK = 1 it first forks a child that runs ROUNDS rounds on one thread, prints its kept blocks
 *   as "child-leak ADDR SIZE PID" and "child-leaked COUNT BYTES", and exits; the parent waits for it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 2
#define MAX_LEAKS 4096

struct leak { void *addr; size_t size; long tid; };

static struct leak leaks[MAX_LEAKS];
static int n_leaks;
static pthread_mutex_t leaks_lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t go;
static volatile sig_atomic_t started;
static int rounds = 200;
static void *volatile sink;

static void say(const char *text) {
    ssize_t ignored = write(STDOUT_FILENO, text, strlen(text));
    (void)ignored;
}

static void keep(void *addr, size_t size) {
    pthread_mutex_lock(&leaks_lock);
    if (n_leaks < MAX_LEAKS) {
        leaks[n_leaks].addr = addr;
        leaks[n_leaks].size = size;
        leaks[n_leaks].tid = syscall(SYS_gettid);
        n_leaks++;
    }
    pthread_mutex_unlock(&leaks_lock);
}

/* Sizes differ per thread (base) so that grouping by size and by thread shows both. */
static void work(size_t base) {
    for (int i = 0; i < rounds; i++) {
        size_t size = base + (size_t)(i % 4) * 16;
        char *p = malloc(size);
        memset(p, 1, size);
        if (i % 10 == 0) {
            keep(p, size);  /* leaked: never freed */
        } else {
            sink = p;
            free(p);
        }
        /* realloc: the old block is freed, the new one is an allocation of its own */
        char *q = calloc(1, 24);
        char *r = realloc(q, 4000);
        if (i % 25 == 0) {
            keep(r, 4000);
        } else {
            free(r);
        }
        struct timespec pause = {0, 2000000};  /* 2 ms: spread the events over time */
        nanosleep(&pause, NULL);
    }
}

static void *worker(void *arg) {
    size_t base = (size_t)arg;
    /* Create this thread's arena and tcache before the traced window. Through a volatile pointer:
     * the compiler removes a plain free(malloc(n)). */
    sink = malloc(base);
    free(sink);
    sem_wait(&go);
    work(base);
    return NULL;
}

static void on_usr1(int sig) {
    (void)sig;
    started = 1;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atoi(argv[1]);
    long delay_ms = argc > 2 ? atol(argv[2]) : 0;
    int exit_after = argc > 3 && atoi(argv[3]) == 1;
    int fork_child = argc > 4 && atoi(argv[4]) == 1;
    sem_init(&go, 0, 0);
    signal(SIGUSR1, on_usr1);
    pthread_t threads[WORKERS];
    for (long w = 0; w < WORKERS; w++)
        pthread_create(&threads[w], NULL, worker, (void *)(64 + 512 * (w + 1)));
    sink = malloc(64);
    free(sink);
    char line[128];
    snprintf(line, sizeof line, "ready %d\n", (int)getpid());
    say(line);
    if (delay_ms > 0) {
        struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&d, NULL);
    } else {
        while (!started) pause();
    }
    if (fork_child) {
        pid_t child = fork();
        if (child == 0) {
            /* the child inherits the parent's leak list: start its own */
            n_leaks = 0;
            work(2048);
            size_t child_bytes = 0;
            for (int i = 0; i < n_leaks; i++) {
                snprintf(line, sizeof line, "child-leak %p %zu %ld\n", leaks[i].addr, leaks[i].size, leaks[i].tid);
                say(line);
                child_bytes += leaks[i].size;
            }
            snprintf(line, sizeof line, "child-leaked %d %zu\n", n_leaks, child_bytes);
            say(line);
            _exit(0);
        }
        waitpid(child, NULL, 0);
    }
    for (int w = 0; w < WORKERS; w++) sem_post(&go);
    work(64);
    for (int w = 0; w < WORKERS; w++) pthread_join(threads[w], NULL);
    size_t bytes = 0;
    for (int i = 0; i < n_leaks; i++) {
        snprintf(line, sizeof line, "leak %p %zu %ld\n", leaks[i].addr, leaks[i].size, leaks[i].tid);
        say(line);
        bytes += leaks[i].size;
    }
    snprintf(line, sizeof line, "leaked %d %zu\ndone\n", n_leaks, bytes);
    say(line);
    if (exit_after) return 0;
    for (;;) pause();
}
