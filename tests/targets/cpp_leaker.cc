// A C++ target whose leak goes through operator new, so captured stacks hold demangled C++ names
// (spaces, parentheses, templates). Usage: cpp_leaker [SECONDS]: for SECONDS (default 8) it adds
// 100 registry entries of 1 KiB every 100 ms and never removes them; a cache of 64 entries churns.
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace app {
template <typename T>
struct Registry {
    std::vector<std::unique_ptr<T>> items;
    __attribute__((noinline)) void add(std::size_t n) {
        for (std::size_t i = 0; i < n; i++) items.push_back(std::make_unique<T>());
    }
};
struct Blob { char data[1024]; };
}  // namespace app

int main(int argc, char **argv) {
    int seconds = argc > 1 ? std::atoi(argv[1]) : 8;
    std::printf("ready %d\n", (int)getpid());
    std::fflush(stdout);
    app::Registry<app::Blob> registry;
    std::map<int, std::string> cache;
    for (int tick = 0; tick < seconds * 10; tick++) {
        registry.add(100);
        cache[tick % 64] = std::string(200, 'x');
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::printf("done %zu\n", registry.items.size());
    std::fflush(stdout);
    pause();
}
