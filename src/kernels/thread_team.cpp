#include "kernels/thread_team.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "formats/error.h"

namespace qe::kernels {
namespace {

using Clock = std::chrono::steady_clock;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a waiting thread stays awake. Quiet machine: the gaps between two jobs of a forward pass
// (a norm, a quantization on the caller) are a few microseconds, so spinning through them costs nothing
// and a futex wake-up (~5-20 us each, ~150 jobs a token) is avoided. Busy machine: a wait that lasts
// longer means the thread it waits for was preempted; yielding, then sleeping, hands the core over.
constexpr auto kSpin = std::chrono::microseconds(30);    // pause loop
constexpr auto kYield = std::chrono::microseconds(300);  // then sched_yield loop, then block

// Waits until done() is true: pause, then yield, then block(). done() is checked between each step.
template <class Done, class Block>
void wait_until(Done done, Block block) {
  if (done()) return;
  const Clock::time_point start = Clock::now();
  for (int i = 1;; ++i) {
    cpu_relax();
    if (done()) return;
    if (i % 64 == 0 && Clock::now() - start > kSpin) break;
  }
  for (int i = 1;; ++i) {
    sched_yield();
    if (done()) return;
    if (i % 16 == 0 && Clock::now() - start > kYield) break;
  }
  while (!done()) block();
}

constexpr uint64_t pack(uint32_t next, uint32_t n) { return static_cast<uint64_t>(n) << 32 | next; }

}  // namespace

ThreadTeam::ThreadTeam(int n_threads) : n_threads_(std::max(1, n_threads)), policy_(n_threads_) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadTeam::~ThreadTeam() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (std::thread& w : workers_) w.join();
}

ThreadTeam& ThreadTeam::for_this_thread(int n_threads) {
  thread_local std::map<int, std::unique_ptr<ThreadTeam>> teams;
  std::unique_ptr<ThreadTeam>& team = teams[std::max(1, n_threads)];
  if (!team) team = std::make_unique<ThreadTeam>(n_threads);
  return *team;
}

int64_t ThreadTeam::work(int thread) {
  int64_t ran = 0;
  uint32_t n = 0;
  uint64_t word = claim_.load(std::memory_order_acquire);
  for (;;) {
    // Guided: a share of what is left (1 / share_div_, see Units), so the first chunks are long and the
    // last ones short (a late thread leaves little behind). The share comes from the last word this
    // thread saw, and the claim is one fetch_add: the claim word's line crosses to this core once per
    // chunk, where a fresh load and then a compare-exchange moved it twice (a batched decode step makes
    // thousands of claims). A stale word only sizes the chunk; the add's result says what was taken.
    const auto seen = static_cast<uint32_t>(word), seen_n = static_cast<uint32_t>(word >> 32);
    if (seen >= seen_n) break;
    const int64_t left = seen_n - seen;
    const int64_t least = min_chunk_.load(std::memory_order_relaxed);
    const int64_t div = share_div_.load(std::memory_order_relaxed);
    const int64_t share = std::min<int64_t>(left, std::max<int64_t>(least, left / div));
    word = claim_.fetch_add(static_cast<uint64_t>(share), std::memory_order_acq_rel);
    const auto next = static_cast<uint32_t>(word);
    n = static_cast<uint32_t>(word >> 32);
    if (next >= n) break;  // every unit was taken (the add went past the end, which is harmless)
    const int64_t chunk = std::min<int64_t>(share, n - next);
    // The chunk is ours, so the job cannot finish (and fn_ change) before we report it done.
    fn_(ctx_, next, next + chunk, thread);
    ran += chunk;
    word += static_cast<uint64_t>(share);  // the word as this add left it
  }
  // Reported once, when no chunk is left to claim: one shared write per thread and job instead of one
  // per chunk (each moves done_'s cache line between the cores).
  if (ran == 0) return 0;
  const uint32_t finished = done_.fetch_add(static_cast<uint32_t>(ran)) + static_cast<uint32_t>(ran);
  // seq_cst add, then load: against the caller's store of caller_waiting_ then load of done_, one of the
  // two sees the other, so a sleeping caller is always woken.
  if (finished == n && caller_waiting_.load()) done_.notify_one();
  return ran;
}

void ThreadTeam::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    wait_until([&] { return generation_.load(std::memory_order_acquire) != seen; },
               [&] {
                 sleepers_.fetch_add(1);
                 generation_.wait(seen);  // returns at once if the generation already moved on
                 sleepers_.fetch_sub(1);
               });
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    work(thread);
  }
}

void ThreadTeam::run_erased(int64_t n_units, int64_t min_chunk, Units units, ChunkFn fn, void* ctx) {
  if (n_units <= 0) return;
  // The claim word's low half counts units, and each thread's last add may pass the end by a share
  // (at most n_units): the count must stay below 2^32 so that it never carries into the high half.
  QE_CHECK(n_units <= (int64_t{1} << 32) / (n_threads_ + 1) - 1);
  min_chunk = std::max<int64_t>(1, min_chunk);
  if (n_threads_ == 1 || n_units <= min_chunk) {
    fn(ctx, 0, n_units, 0);
    return;
  }
  // A job's class for the policy: its code and its size.
  const uint64_t key = reinterpret_cast<uintptr_t>(fn) ^ static_cast<uint64_t>(n_units) << 40 ^
                       static_cast<uint64_t>(min_chunk) << 20;
  const Clock::time_point start = Clock::now();
  if (!policy_.team()) {
    fn(ctx, 0, n_units, 0);
    policy_.record(key, std::chrono::duration<double, std::nano>(Clock::now() - start).count(), 0, 0);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  min_chunk_.store(min_chunk, std::memory_order_relaxed);
  share_div_.store(units == Units::even ? n_threads_ : 4 * n_threads_, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(pack(0, static_cast<uint32_t>(n_units)), std::memory_order_release);
  generation_.fetch_add(1);  // seq_cst: ordered against a worker's sleepers_ increment
  if (sleepers_.load() > 0) generation_.notify_all();
  const int64_t own_units = work(0);
  const Clock::time_point own_done = Clock::now();
  const auto n = static_cast<uint32_t>(n_units);
  wait_until([&] { return done_.load(std::memory_order_acquire) == n; },
             [&] {
               caller_waiting_.store(1);
               const uint32_t d = done_.load();
               if (d != n) done_.wait(d);
               caller_waiting_.store(0);
             });
  const Clock::time_point end = Clock::now();
  policy_.record(key, std::chrono::duration<double, std::nano>(end - start).count(),
                 std::chrono::duration<double, std::nano>(end - own_done).count(),
                 1.0 - static_cast<double>(own_units) / static_cast<double>(n_units));
}

}  // namespace qe::kernels
