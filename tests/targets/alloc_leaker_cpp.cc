// The C++ twin of alloc_leaker.c: the leak goes through operator new, which tcmalloc and jemalloc
// implement without calling malloc. Usage: alloc_leaker_cpp [SECONDS]
// Every 100 ms for SECONDS (default 10): leak_with_new() keeps 20 Node objects of 512 bytes;
// churn() news and deletes (plain, array, nothrow, aligned, sized delete) and never keeps anything.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <unistd.h>

struct Node {
    char data[504];
    Node *next;
};

struct alignas(64) Aligned {
    char data[192];
};

static Node *head;

__attribute__((noinline)) void leak_with_new() {
    for (int i = 0; i < 20; i++) {
        Node *n = new Node;
        std::memset(n->data, 'N', sizeof n->data);
        n->next = head;
        head = n;
    }
}

__attribute__((noinline)) void churn() {
    for (int i = 0; i < 30; i++) {
        char *buf = new char[100 + i];
        buf[0] = 1;
        delete[] buf;
        Node *n = new (std::nothrow) Node;
        delete n;
        Aligned *a = new Aligned;
        a->data[0] = 1;
        delete a;
    }
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? std::atoi(argv[1]) : 10;
    std::printf("ready %d\n", (int)getpid());
    std::fflush(stdout);
    for (int tick = 0; tick < seconds * 10; tick++) {
        leak_with_new();
        churn();
        usleep(100000);
    }
    std::printf("done\n");
    std::fflush(stdout);
    pause();
    return 0;
}
