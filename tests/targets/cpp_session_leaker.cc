// A C++ target whose leak is allocated inside the standard library's templates: a session keeps a
// payload that std::vector<char>::resize allocates (vector.tcc, compiled into this program), and a
// registry keeps every fourth session forever. Usage: cpp_session_leaker [SECONDS] (default 8).
// Four threads; a scratch vector per request is freed (churn). Built -O2 without frame pointers.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

struct Session {
    std::string user;
    std::vector<char> payload;
};

class Registry {
  public:
    void remember(int id, std::unique_ptr<Session> s) {
        std::lock_guard<std::mutex> g(m_);
        kept_[id] = std::move(s);
    }

  private:
    std::mutex m_;
    std::map<int, std::unique_ptr<Session>> kept_;
};
static Registry registry;

__attribute__((noinline)) std::unique_ptr<Session> make_session(int id) {
    auto s = std::make_unique<Session>();
    s->user = "user-" + std::to_string(id);
    s->payload.resize(3000 + id % 7);  // LEAK: the payload of a kept session
    return s;
}

__attribute__((noinline)) void handle_request(int id) {
    std::vector<int> scratch(256 + id % 100);  // freed at the end of the request
    for (std::size_t i = 0; i < scratch.size(); ++i) scratch[i] = static_cast<int>(i) * id;
    if (id % 4 == 0) registry.remember(id, make_session(id));
}

static void worker(int base, int seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
        handle_request(base + i * 8);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? std::atoi(argv[1]) : 8;
    std::printf("ready %d\n", (int)getpid());
    std::fflush(stdout);
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k) threads.emplace_back(worker, k, seconds);
    for (auto &t : threads) t.join();
    pause();
}
