/* Makes the kernel leak for real, without a module: holds ever more kernel objects through fds.
 *
 *   kernel_fds [LEAK_SECONDS [HOLD_SECONDS [PER_SECOND [KIND]]]]   (default 10 5 400 eventfd)
 *
 * For LEAK_SECONDS it creates PER_SECOND objects a second and never closes them (KIND: eventfd,
 * timerfd, socket, or mix for all three in turn), each through its own noinline function so the
 * user stack names it too. Each eventfd2() allocates a struct eventfd_ctx (kmalloc) and a struct
 * file (filp cache); a timerfd a timerfd_ctx; a socket an inode, a sock and a file. Then it closes
 * them all at once ("closed N" on stdout) and stays alive HOLD_SECONDS more, so that a probe sees
 * the kernel's outstanding bytes of that syscall path fall back. SIGUSR1 closes them early.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t close_now;

static void on_usr1(int sig) {
    (void)sig;
    close_now = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) int hold_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }

__attribute__((noinline)) int hold_timerfd(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC); }

__attribute__((noinline)) int hold_socket(void) { return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

int main(int argc, char **argv) {
    double leak_s = argc > 1 ? atof(argv[1]) : 10;
    double hold_s = argc > 2 ? atof(argv[2]) : 5;
    long per_s = argc > 3 ? atol(argv[3]) : 400;
    const char *kind = argc > 4 ? argv[4] : "eventfd";
    if (per_s < 1)
        per_s = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);

    long cap = (long)(leak_s * per_s) + 16;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)cap + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)cap + 64 ? rl.rlim_max : (rlim_t)cap + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *fds = calloc((size_t)cap, sizeof *fds);
    if (fds == NULL)
        return 1;
    long n = 0, failed = 0;
    double start = now();
    printf("ready pid=%d\n", (int)getpid());
    while (!close_now && now() - start < leak_s && n < cap) {
        double due = start + (double)n / per_s;
        double wait = due - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
            continue;
        }
        int fd;
        int which = strcmp(kind, "mix") == 0 ? (int)(n % 3) : strcmp(kind, "timerfd") == 0 ? 1
                                                         : strcmp(kind, "socket") == 0  ? 2
                                                                                        : 0;
        fd = which == 0 ? hold_eventfd() : which == 1 ? hold_timerfd() : hold_socket();
        if (fd < 0) {
            failed++;
            if (failed > 100)
                break; /* out of fds: stop creating, still close what we hold */
            continue;
        }
        fds[n++] = fd;
    }
    printf("held %ld (failed %ld)\n", n, failed);
    for (long i = 0; i < n; i++)
        close(fds[i]);
    printf("closed %ld\n", n);
    double closed_at = now();
    while (now() - closed_at < hold_s) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    free(fds);
    return 0;
}
