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
// The job word: the tag, the job's unit count and k, the threads that start with a range (22 bits each).
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

// Tags are compared by their distance mod 2^20: a word is of an earlier job when its tag is less than
// half the tag space behind the job's. Every word is written afresh every kRefreshJobs team jobs, so no
// word is older than that; only a thread late by half the tag space (half a million jobs, seconds of
// forward passes, between its reading the job word and a claim) would take a word of a later job for an
// earlier one.
constexpr uint64_t kTagHalf = (kTagMask + 1) / 2;
constexpr int kRefreshJobs = 4096;

struct Span {
  int64_t next, end;
  int64_t left() const { return end - next; }
};
// A thread's range at the start of `job`: [t n / k, (t + 1) n / k) for the first k threads, else none.
Span first_range(uint64_t job, int thread) {
  const int64_t n = next_of(job), k = end_of(job);
  if (thread >= k) return {n, n};
  return {thread * n / k, (thread + 1) * n / k};
}
// A thread's range as job `job` sees its word w: the word's own when it is of this job; the thread's
// first range when it is of an earlier job (nothing has been claimed from it yet); none when it is of a
// later job (this one is over).
Span span_of(uint64_t w, uint64_t job, int thread) {
  const uint64_t behind = (tag_of(job) - tag_of(w)) & kTagMask;
  if (behind == 0) return {next_of(w), end_of(w)};
  if (behind >= kTagHalf) return {0, 0};
  return first_range(job, thread);
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
  line_.stop.store(true);
  line_.generation.fetch_add(1);
  line_.generation.notify_all();
  for (std::thread& w : workers_) w.join();
}

ThreadTeam& ThreadTeam::for_this_thread(int n_threads) {
  thread_local std::map<int, std::unique_ptr<ThreadTeam>> teams;
  std::unique_ptr<ThreadTeam>& team = teams[std::max(1, n_threads)];
  if (!team) team = std::make_unique<ThreadTeam>(n_threads);
  return *team;
}

int64_t ThreadTeam::work(int thread, uint64_t job) {
  std::atomic<uint64_t>& own = ranges_[thread].word;
  const uint64_t tag = tag_of(job);
  int64_t ran = 0;
  do {
    // The own range from its front: a quarter of what is left a chunk (so that a thief finds most of it
    // unclaimed), at least min_chunk.
    uint64_t word = own.load(std::memory_order_acquire);
    for (Span r; (r = span_of(word, job, thread)).left() > 0;) {
      const int64_t least = line_.min_chunk.load(std::memory_order_relaxed);
      const int64_t chunk = std::min(r.left(), std::max(least, r.left() / 4));
      if (!own.compare_exchange_weak(word, pack(tag, r.next + chunk, r.end), std::memory_order_acq_rel,
                                     std::memory_order_acquire))
        continue;  // a thief lowered the end: word holds the range as it is now
      // The chunk is ours, so the job cannot finish (and fn change) before we report it done.
      line_.fn(line_.ctx, r.next, r.next + chunk, thread);
      ran += chunk;
      word = own.load(std::memory_order_acquire);
    }
  } while (steal(thread, job));
  // Reported once, when no range has units left: one shared write per thread and job instead of one per
  // chunk (each moves done_'s cache line between the cores).
  if (ran == 0) return 0;
  done_.fetch_add(static_cast<uint32_t>(ran));
  // seq_cst add, then load: against the caller's store of caller_waiting_ then load of done_, one of the
  // two sees the other, so a sleeping caller is always woken (at worst once too often: it looks again).
  if (caller_waiting_.load()) done_.notify_one();
  return ran;
}

bool ThreadTeam::steal(int thread, uint64_t job) {
  const uint64_t tag = tag_of(job);
  for (;;) {
    int victim = -1;
    uint64_t word = 0;
    Span most{0, 0};
    for (int i = 1; i < n_threads_; ++i) {
      const int v = (thread + i) % n_threads_;
      const uint64_t w = ranges_[v].word.load(std::memory_order_acquire);
      if (const Span r = span_of(w, job, v); r.left() > most.left()) {
        most = r;
        victim = v;
        word = w;
      }
    }
    if (victim < 0) return false;
    // The back half, or all of a range of one chunk or less (its owner may be preempted).
    const int64_t take =
        most.left() <= line_.min_chunk.load(std::memory_order_relaxed) ? most.left() : most.left() / 2;
    const int64_t cut = most.end - take;
    if (!ranges_[victim].word.compare_exchange_strong(word, pack(tag, most.next, cut),
                                                      std::memory_order_acq_rel, std::memory_order_relaxed))
      continue;  // the range moved: look again
    // This thread's range is empty, so no thief writes it: a plain store makes [cut, end) its range.
    ranges_[thread].word.store(pack(tag, cut, most.end), std::memory_order_release);
    return true;
  }
}

void ThreadTeam::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    wait_until([&] { return line_.generation.load(std::memory_order_acquire) != seen; },
               [&] {
                 line_.sleepers.fetch_add(1);
                 line_.generation.wait(seen);  // returns at once if the generation already moved on
                 line_.sleepers.fetch_sub(1);
               });
    seen = line_.generation.load(std::memory_order_acquire);
    if (line_.stop.load()) return;
    // The job as it is now (a later one than `seen`'s if the caller has moved on: its own word).
    work(thread, line_.job.load(std::memory_order_acquire));
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
  line_.fn = fn;
  line_.ctx = ctx;
  line_.min_chunk.store(min_chunk, std::memory_order_relaxed);
  // k threads start with a range, [t n / k, (t + 1) n / k) each, of at least a chunk; the others start
  // empty and steal. No range word is written for that (span_of reads a word of an earlier job as the
  // thread's first range), except every kRefreshJobs jobs, when all are, so that none grows old enough
  // for its tag to come round again.
  const uint64_t tag = (line_.generation.load(std::memory_order_relaxed) + 1) & kTagMask;
  const int64_t k = std::min<int64_t>(n_threads_, n_units / min_chunk);
  const uint64_t job = pack(tag, n_units, k);
  if (--jobs_to_refresh_ < 0) {
    jobs_to_refresh_ = kRefreshJobs;
    for (int t = 0; t < n_threads_; ++t) {
      const Span r = first_range(job, t);
      ranges_[t].word.store(pack(tag, r.next, r.end), std::memory_order_relaxed);
    }
  }
  line_.job.store(job, std::memory_order_release);
  done_target_ += static_cast<uint32_t>(n_units);
  // seq_cst: publishes the job; ordered against a worker's sleepers increment
  line_.generation.fetch_add(1);
  if (line_.sleepers.load() > 0) line_.generation.notify_all();
  const int64_t own_units = work(0, job);
  const Clock::time_point own_done = Clock::now();
  const uint32_t target = done_target_;
  wait_until([&] { return done_.load(std::memory_order_acquire) == target; },
             [&] {
               caller_waiting_.store(1);
               const uint32_t d = done_.load();
               if (d != target) done_.wait(d);
               caller_waiting_.store(0);
             });
  const Clock::time_point end = Clock::now();
  policy_.record(key, std::chrono::duration<double, std::nano>(end - start).count(),
                 std::chrono::duration<double, std::nano>(end - own_done).count(),
                 1.0 - static_cast<double>(own_units) / static_cast<double>(n_units));
}

}  // namespace qe::kernels
