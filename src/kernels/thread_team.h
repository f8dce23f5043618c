// The forward pass's threads: a team of our own instead of OpenMP's fork-join regions.
//
// Why not OpenMP: its static splits give each thread a fixed share, so when another process preempts
// one thread the others wait at the barrier for its whole share (measured on 2 busy cores: `-t 2`
// decoding at half the speed of `-t 1`), and its waiting threads spin through the preemption, taking the
// CPU the late thread needs. Here a job's units are split into one contiguous range per thread, which
// its owner runs from the front a chunk at a time; a thread whose range runs out takes the back half of
// the largest range left (work stealing). So a preempted thread holds one chunk and the others take the
// rest of its range, each thread reads its weights as one stream (its chunks follow each other in
// memory, where its software prefetches run ahead), and the threads end within about one chunk of each
// other. Every wait spins only briefly (the gaps between matmuls on a quiet machine are microseconds)
// before blocking on a futex, which gives the core back to whoever is late.
//
//   ThreadTeam team(4);
//   team.run(n_rows / 16, [&](int64_t begin, int64_t end, int thread) { ... units [begin, end) ... });
//
// On a busy machine the team may leave jobs to the caller alone, when its own timings say that is faster
// (kernels/thread_team_policy.h); results are the same bits either way.
//
// run() is called by one thread at a time (the team's owner, which works as thread 0). OpenMP stays in
// the offline converter (qconvert), whose loops run on a dedicated machine and gain nothing from this.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "kernels/thread_team_policy.h"

namespace qe::kernels {

class ThreadTeam {
 public:
  // n_threads >= 1 (values below are taken as 1): the caller plus n_threads - 1 workers, started here.
  explicit ThreadTeam(int n_threads);
  ~ThreadTeam();
  ThreadTeam(const ThreadTeam&) = delete;
  ThreadTeam& operator=(const ThreadTeam&) = delete;

  int size() const { return n_threads_; }
  const TeamPolicy& policy() const { return policy_; }

  // Calls fn(begin, end, thread) on disjoint ranges covering [0, n_units) (n_units < kMaxUnits) and
  // returns when all have run. A thread's chunks are a quarter of what is left of its range, shrinking
  // to min_chunk units as it runs out; `thread` (< size()) indexes per-thread scratch. fn must not
  // throw. Work of one chunk or less runs on the caller alone.
  static constexpr int64_t kMaxUnits = int64_t{1} << 22;
  template <class Fn>
  void run(int64_t n_units, Fn&& fn, int64_t min_chunk = 1) {
    using F = std::remove_reference_t<Fn>;
    auto call = [](void* f, int64_t b, int64_t e, int t) { (*static_cast<F*>(f))(b, e, t); };
    run_erased(n_units, min_chunk, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // A team of n_threads for the calling thread, made on first use and kept until the thread exits: for
  // callers that pass a thread count instead of a team (tests, benchmarks, the converter).
  static ThreadTeam& for_this_thread(int n_threads);

 private:
  using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end, int thread);

  void run_erased(int64_t n_units, int64_t min_chunk, ChunkFn fn, void* ctx);
  // Runs chunks of `job` (line_.job as the thread read it) until no range of it has units left: its
  // own range's, then stolen ones; returns the units it ran.
  int64_t work(int thread, uint64_t job);
  bool steal(int thread, uint64_t job);  // moves the back half of the largest range left into thread's
  void worker_main(int thread);

  const int n_threads_;
  TeamPolicy policy_;  // used by the caller's thread only
  uint32_t done_target_ = 0;  // done_ once the current job is over (caller only)
  int jobs_to_refresh_ = 0;   // team jobs until every range word is written again (caller only)

  // What a waking worker reads, in one cache line: the generation it waits on, and the job. Written by
  // the caller only, before it bumps the generation (sleepers: by workers going to sleep, rarely).
  struct alignas(64) JobLine {
    std::atomic<uint32_t> generation{0};  // bumped once per job; workers sleep on it
    std::atomic<uint32_t> sleepers{0};
    std::atomic<bool> stop{false};
    // The job's tag (the low bits of its generation), unit count and the number of threads with a
    // range of their own at its start, one word, so that a worker late by a job reads one job's, never a
    // mix of two.
    std::atomic<uint64_t> job{0};
    // Read by a worker sizing a chunk, which a late one may do while the caller sets the next job's (a
    // claim of a stale range then fails; see Range).
    std::atomic<int64_t> min_chunk{1};
    // Read by a worker only after it claimed a chunk of the job (so the job cannot end under it).
    ChunkFn fn = nullptr;
    void* ctx = nullptr;
  };
  JobLine line_;
  // Each thread's range of the current job, one word: a job's tag, its next unit and its end. Its owner
  // advances the next unit and thieves lower the end, each by one compare-exchange of the whole word, so
  // a claim made from a stale word (another job's, or a range that moved) fails and is retried on what
  // the word now holds. A word of an earlier job stands for the thread's first range in this one (no one
  // has claimed from it yet): the caller does not write the workers' words at a job's start, so a waking
  // worker finds its own where it left it, in its own cache.
  struct alignas(64) Range {
    std::atomic<uint64_t> word{0};
  };
  std::unique_ptr<Range[]> ranges_;
  alignas(64) std::atomic<uint32_t> done_{0};  // units finished, over all jobs (wraps)
  std::atomic<uint32_t> caller_waiting_{0};    // the caller sleeps on done_
  std::vector<std::thread> workers_;
};

}  // namespace qe::kernels
