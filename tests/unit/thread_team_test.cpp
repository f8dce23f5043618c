// The thread team: every unit runs exactly once, on a valid thread index, through many back-to-back
// jobs (the forward pass's pattern), through jobs long enough that the waiting threads fall asleep, and
// with more threads than cores (the busy-machine case, where workers are preempted mid-job).
#include "kernels/thread_team.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace qe::kernels {
namespace {

// Runs one job of n units and checks each ran once, on threads < size, in non-empty in-range chunks.
void check_job(ThreadTeam& team, int64_t n, int64_t min_chunk) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> bad{false};
  team.run(
      n,
      [&](int64_t b, int64_t e, int thread) {
        if (b >= e || b < 0 || e > n || thread < 0 || thread >= team.size()) bad = true;
        for (int64_t i = b; i < e && !bad; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      },
      min_chunk);
  ASSERT_FALSE(bad) << "n " << n << " min_chunk " << min_chunk;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "unit " << i << " of " << n;
}

TEST(ThreadTeam, EveryUnitRunsOnceForEverySizeAndChunk) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadTeam team(threads);
    EXPECT_EQ(team.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 15, 16, 17, 100, 352, 2000, 100000})
      for (int64_t min_chunk : {1, 4, 64}) check_job(team, n, min_chunk);
  }
}

TEST(ThreadTeam, ManyShortJobsInARow) {
  // A decode step is ~150 jobs of microseconds each: a lost wake-up or a stale claim would hang or
  // double-run a unit here.
  ThreadTeam team(4);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 20000; ++job)
    team.run(8, [&](int64_t b, int64_t e, int) { sum.fetch_add(e - b); });
  EXPECT_EQ(sum.load(), 20000 * 8);
}

TEST(ThreadTeam, WorkersThatFellAsleepAreWoken) {
  ThreadTeam team(3);
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // longer than the spin: workers block
    check_job(team, 64, 1);
  }
}

TEST(ThreadTeam, SlowChunksAreTakenByTheOthers) {
  // One unit that sleeps (as if its thread were preempted): the other units still run, each once, and
  // run() waits for the slow one.
  ThreadTeam team(2);
  std::vector<std::atomic<int>> hits(64);
  team.run(64, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      hits[static_cast<size_t>(i)].fetch_add(1);
    }
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadTeam, MoreThreadsThanCores) {
  const int threads = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadTeam team(threads);
  for (int job = 0; job < 200; ++job) check_job(team, 1000, 1);
}

TEST(ThreadTeam, ForThisThreadKeepsOneTeamPerSize) {
  ThreadTeam& a = ThreadTeam::for_this_thread(2);
  EXPECT_EQ(&a, &ThreadTeam::for_this_thread(2));
  EXPECT_EQ(a.size(), 2);
  EXPECT_EQ(ThreadTeam::for_this_thread(0).size(), 1);  // below 1 counts as 1
  ThreadTeam* other = nullptr;
  std::thread([&] { other = &ThreadTeam::for_this_thread(2); }).join();
  EXPECT_NE(other, &a);  // another calling thread gets its own team
}

}  // namespace
}  // namespace qe::kernels
