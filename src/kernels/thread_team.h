// The forward pass's threads: a team of our own instead of OpenMP's fork-join regions.
//
// Why not OpenMP: its static splits give each thread a fixed share, so when another process preempts
// one thread the others wait at the barrier for its whole share (measured on 2 busy cores: `-t 2`
// decoding at half the speed of `-t 1`), and its waiting threads spin through the preemption, taking the
// CPU the late thread needs. Here work is a range of units handed out in shrinking chunks ("guided"),
// so a preempted thread holds one chunk (a share of what was left when it claimed it, see Units) and
// the others take the rest, the late claims being small; and every wait
// spins only briefly (the gaps between matmuls on a quiet machine are microseconds) before blocking on
// a futex, which gives the core back to whoever is late.
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

  // What a job's units cost, which sets how much of what is left one claim takes:
  //   even    about the same each (matmul rows, tokens): 1 / size(), OpenMP's guided rule. Claims are
  //           few, since a chunk costs more than its claim: a matmul chunk starts a new DRAM stream
  //           and a kernel call. Against 1 / (4 size()), on a 2-core Zen 4, alternating: 1.1B q4_0
  //           tg64 at 2 threads 80-82 -> 90-92 t/s, SmolLM2 one stream 372 -> 484, eight 1130 -> 1250.
  //   uneven  varying (attention's items, the costliest first): 1 / (4 size()), so that no thread's
  //           first chunk holds more than its share of the work (with 1 / size() the caller's first
  //           chunk held the costliest half of a prompt's items, and pp512 lost 3-4%).
  enum class Units { even, uneven };

  // Calls fn(begin, end, thread) on disjoint ranges covering [0, n_units) and returns when all have
  // run. Chunks shrink (see Units) to min_chunk units as the work runs out; `thread` (< size())
  // indexes per-thread scratch. fn must not throw. Work below one chunk per thread runs on the caller
  // alone.
  template <class Fn>
  void run(int64_t n_units, Fn&& fn, int64_t min_chunk = 1, Units units = Units::even) {
    using F = std::remove_reference_t<Fn>;
    auto call = [](void* f, int64_t b, int64_t e, int t) { (*static_cast<F*>(f))(b, e, t); };
    run_erased(n_units, min_chunk, units, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // A team of n_threads for the calling thread, made on first use and kept until the thread exits: for
  // callers that pass a thread count instead of a team (tests, benchmarks, the converter).
  static ThreadTeam& for_this_thread(int n_threads);

 private:
  using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end, int thread);

  void run_erased(int64_t n_units, int64_t min_chunk, Units units, ChunkFn fn, void* ctx);
  int64_t work(int thread);  // claims and runs chunks of the current job until none is left; units run
  void worker_main(int thread);

  const int n_threads_;
  TeamPolicy policy_;  // used by the caller's thread only
  // The current job. Written by the caller only while no chunk is in flight; read by a worker only
  // after it claimed a chunk of it (so the job cannot end under it).
  ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  // The exceptions: a worker sizes its next claim with the chunk floor and the share divisor before it
  // holds a chunk, so it may read them while the caller sets the next job's (a stale value only sizes
  // that one claim).
  std::atomic<int64_t> min_chunk_{1};
  std::atomic<int64_t> share_div_{1};  // a claim takes 1 / share_div_ of what is left
  // Claim word: next unit (low 32 bits) and the job's unit count (high 32 bits) in one word, advanced by
  // fetch_add, so the add's result names both the units taken and the job they belong to: a worker that
  // wakes late can only take a chunk of the job that is current (the next unit may pass the count, by at
  // most a share per thread: run() keeps the count small enough that it never carries).
  alignas(64) std::atomic<uint64_t> claim_{0};
  alignas(64) std::atomic<uint32_t> done_{0};      // units finished in the current job
  std::atomic<uint32_t> caller_waiting_{0};        // the caller sleeps on done_
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped once per job; workers sleep on it
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
};

}  // namespace qe::kernels
