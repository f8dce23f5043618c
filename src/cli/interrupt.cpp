#include "cli/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace qe::cli {
namespace {

// Lock-free, so the handler may touch it (async-signal-safe).
std::atomic<int> g_pending{0};
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_interrupt(int sig) {
  if (g_pending.fetch_add(1) > 0) _exit(128 + sig);  // the second one: no clean-up, no output
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
