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

// A range's word: the job's tag (20 bits), then its next unit and its end (22 bits each, < kMaxUnits).
// 2^20 jobs (seconds of a forward pass) pass before a tag comes back, far longer than a claim takes
// from reading a word to its compare-exchange.
constexpr int kUnitBits = 22;
constexpr uint64_t kUnitMask = (uint64_t{1} << kUnitBits) - 1, kTagMask = (uint64_t{1} << 20) - 1;
static_assert(ThreadTeam::kMaxUnits == int64_t{1} << kUnitBits);
constexpr uint64_t pack(uint64_t tag, int64_t next, int64_t end) {
  return tag << 2 * kUnitBits | static_cast<uint64_t>(next) << kUnitBits | static_cast<uint64_t>(end);
}
constexpr uint64_t tag_of(uint64_t w) {
  return w >> 2 * kUnitBits;
}
constexpr int64_t next_of(uint64_t w) {
  return static_cast<int64_t>(w >> kUnitBits & kUnitMask);
}
constexpr int64_t end_of(uint64_t w) {
  return static_cast<int64_t>(w & kUnitMask);
}
// Units left in w if it belongs to job `tag`, else 0.
constexpr int64_t left_of(uint64_t w, uint64_t tag) {
  return tag_of(w) == tag ? std::max<int64_t>(0, end_of(w) - next_of(w)) : 0;
}

}  // namespace

ThreadTeam::ThreadTeam(int n_threads)
    : n_threads_(std::max(1, n_threads)),
      policy_(n_threads_),
      ranges_(new Range[static_cast<size_t>(n_threads_)]) {
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

int64_t ThreadTeam::work(int thread, uint64_t tag) {
  std::atomic<uint64_t>& own = ranges_[thread].word;
  int64_t ran = 0;
  do {
    // The own range from its front: a quarter of what is left a chunk (so that a thief finds most of it
    // unclaimed), at least min_chunk.
    uint64_t word = own.load(std::memory_order_acquire);
    for (int64_t left; (left = left_of(word, tag)) > 0;) {
      const int64_t least = min_chunk_.load(std::memory_order_relaxed);
      const int64_t chunk = std::min(left, std::max(least, left / 4)), next = next_of(word);
      if (!own.compare_exchange_weak(word, pack(tag, next + chunk, end_of(word)), std::memory_order_acq_rel,
                                     std::memory_order_acquire))
        continue;  // a thief lowered the end: word holds the range as it is now
      // The chunk is ours, so the job cannot finish (and fn_ change) before we report it done.
      fn_(ctx_, next, next + chunk, thread);
      ran += chunk;
      word = own.load(std::memory_order_acquire);
    }
  } while (steal(thread, tag));
  // Reported once, when no range has units left: one shared write per thread and job instead of one per
  // chunk (each moves done_'s cache line between the cores).
  if (ran == 0) return 0;
  const uint32_t n = job_units_;  // read while the job cannot end: this thread's units are not counted yet
  const uint32_t finished = done_.fetch_add(static_cast<uint32_t>(ran)) + static_cast<uint32_t>(ran);
  // seq_cst add, then load: against the caller's store of caller_waiting_ then load of done_, one of the
  // two sees the other, so a sleeping caller is always woken.
  if (finished == n && caller_waiting_.load()) done_.notify_one();
  return ran;
}

bool ThreadTeam::steal(int thread, uint64_t tag) {
  for (;;) {
    int victim = -1;
    uint64_t word = 0;
    int64_t most = 0;
    for (int i = 1; i < n_threads_; ++i) {
      const int v = (thread + i) % n_threads_;
      const uint64_t w = ranges_[v].word.load(std::memory_order_acquire);
      if (const int64_t left = left_of(w, tag); left > most) {
        most = left;
        victim = v;
        word = w;
      }
    }
    if (victim < 0) return false;
    // The back half, or all of a range of one chunk or less (its owner may be preempted).
    const int64_t take = most <= min_chunk_.load(std::memory_order_relaxed) ? most : most / 2;
    const int64_t end = end_of(word), cut = end - take;
    if (!ranges_[victim].word.compare_exchange_strong(word, pack(tag, next_of(word), cut),
                                                      std::memory_order_acq_rel, std::memory_order_relaxed))
      continue;  // the range moved: look again
    // This thread's range is empty, so no thief writes it: a plain store makes [cut, end) its range.
    ranges_[thread].word.store(pack(tag, cut, end), std::memory_order_release);
    return true;
  }
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
    work(thread, seen & kTagMask);
  }
}

void ThreadTeam::run_erased(int64_t n_units, int64_t min_chunk, ChunkFn fn, void* ctx) {
  if (n_units <= 0) return;
  QE_CHECK(n_units < kMaxUnits);
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
  done_.store(0, std::memory_order_relaxed);
  job_units_ = static_cast<uint32_t>(n_units);
  // One range per thread, of at least a chunk each: [t n / k, (t + 1) n / k) for the first k threads;
  // the others start empty and steal.
  const uint64_t tag = (generation_.load(std::memory_order_relaxed) + 1) & kTagMask;
  const int64_t k = std::min<int64_t>(n_threads_, n_units / min_chunk);
  for (int t = 0; t < n_threads_; ++t) {
    const int64_t b = t < k ? t * n_units / k : n_units, e = t < k ? (t + 1) * n_units / k : n_units;
    ranges_[t].word.store(pack(tag, b, e), std::memory_order_relaxed);
  }
  generation_.fetch_add(1);  // seq_cst: publishes the ranges; ordered against a worker's sleepers_ increment
  if (sleepers_.load() > 0) generation_.notify_all();
  const int64_t own_units = work(0, tag);
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
