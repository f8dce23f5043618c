#include "cli/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <time.h>

#include <atomic>
#include <cstdint>

namespace qe::cli {
namespace {

// Lock-free, so the handler may touch it (async-signal-safe).
std::atomic<int> g_pending{0};
std::atomic<int> g_signal{0};
std::atomic<int64_t> g_first_ns{0};  // when the first one came (CLOCK_MONOTONIC)
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free);

// A repeat this soon is the same Ctrl-C delivered twice: GNU timeout (`timeout -s INT 2 qrun ...`) sends
// its signal to the child and again to its process group, microseconds apart. A person's second Ctrl-C
// comes later.
constexpr int64_t kSameSignalNs = 100'000'000;

int64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);  // async-signal-safe
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

extern "C" void on_interrupt(int sig) {
  const int64_t now = now_ns();
  if (g_pending.load() > 0) {
    if (now - g_first_ns.load() < kSameSignalNs) return;
    _exit(128 + sig);  // the second one: no clean-up, no output
  }
  g_first_ns.store(now);
  g_pending.fetch_add(1);
  int none = 0;
  g_signal.compare_exchange_strong(none, sig);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  // Restarted system calls: a write to stdout is not cut short; waits that must notice the signal
  // (the chat's read of stdin) poll, which a signal always interrupts.
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() {
  return g_pending.load() > 0;
}

int interrupt_signal() {
  return g_signal.load();
}

void clear_interrupt() {
  g_pending.store(0);
  g_signal.store(0);
}

}  // namespace qe::cli
