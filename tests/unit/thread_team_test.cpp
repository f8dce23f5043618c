// The thread team: every unit runs exactly once, on a valid thread index, through many back-to-back
// jobs (the forward pass's pattern), through jobs long enough that the waiting threads fall asleep, and
// with more threads than cores (the busy-machine case, where workers are preempted mid-job).
#include "kernels/thread_team.h"

#include "kernels/thread_team_policy.h"

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
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "unit " << i << " of " << n;
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
  // A decode step is ~150 jobs of microseconds each: a lost wake-up or a claim on a stale range would
  // hang or double-run a unit here. The jobs alternate sizes and chunk floors, so a late worker may size
  // a claim with the previous job's.
  ThreadTeam team(4);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 20000; ++job)
    team.run(
        job % 2 ? 8 : 13, [&](int64_t b, int64_t e, int) { sum.fetch_add(e - b); }, job % 3 ? 1 : 2);
  EXPECT_EQ(sum.load(), 10000 * 8 + 10000 * 13);
}

TEST(ThreadTeam, ThreadsLeftOutOfManyJobsTakeTheirRangesAgain) {
  // Jobs of 2 units give 2 of the 4 threads a range; the other two start empty and their range words
  // keep an old job's tag, which a later job reads as "first range, nothing claimed yet". Across the
  // team's periodic rewrite of every word (every 4096 jobs), a job of 16 units every 97 then needs all
  // four ranges again: each unit runs once.
  ThreadTeam team(4);
  for (int job = 0; job < 3 * 4096 + 200; ++job) {
    if (job % 97 == 0) {
      check_job(team, 16, 1);
      check_job(team, 3, 1);
    }
    check_job(team, 2, 1);
  }
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

TEST(ThreadTeam, TheRangeOfAStalledThreadIsTaken) {
  // The worker stalls in its first chunk (as if preempted there): the caller runs its own range, then
  // takes back halves of the worker's until none is left, so it runs all but that first chunk (a
  // quarter of the worker's half) and never waits for the stall to end before doing so.
  ThreadTeam team(2);
  std::vector<std::atomic<int>> hits(1024);
  std::atomic<int64_t> by_caller{0};
  team.run(1024, [&](int64_t b, int64_t e, int thread) {
    if (thread != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (thread == 0) by_caller += e - b;
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_GE(by_caller.load(), 1024 - 1024 / 8);
}

TEST(ThreadTeam, MoreThreadsThanCores) {
  const int threads = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadTeam team(threads);
  for (int job = 0; job < 200; ++job) check_job(team, 1000, 1);
}

TEST(ThreadTeam, LateWorkersHandTheJobsToTheCaller) {
  // Units of 10 us, and workers that take 2 ms more over every chunk (as if preempted each time): the
  // team is slower than its caller alone, the policy goes solo, and every unit still runs once.
  ThreadTeam team(2);
  std::vector<std::atomic<int>> hits(64);
  for (int job = 0; job < 6 * TeamPolicy::kWindow && team.policy().team(); ++job) {
    team.run(64, [&](int64_t b, int64_t e, int thread) {
      if (thread != 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      for (int64_t i = b; i < e; ++i) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(10);
        while (std::chrono::steady_clock::now() < until) {
        }
        hits[static_cast<size_t>(i)].fetch_add(1);
      }
    });
    for (auto& h : hits) ASSERT_EQ(h.exchange(0), 1) << "job " << job;
  }
  EXPECT_FALSE(team.policy().team());
  EXPECT_GE(team.policy().trials(), 1);
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

namespace qe::kernels {
namespace {

// TeamPolicy (of 2 threads) on made-up timings: a job of class `key` costs team_ns (late_ns of it
// waiting for late workers, `helped` the share of its units the worker ran) with the team and solo_ns
// alone. Returns the share of jobs that ran with the team.
struct Timings {
  double team_ns, late_ns, solo_ns, helped = 0.5;
};

double team_share(TeamPolicy& p, int windows, const Timings& a, const Timings& b) {
  int team_jobs = 0, jobs = windows * TeamPolicy::kWindow;
  for (int j = 0; j < jobs; ++j) {
    // Two classes in a 3:1 mix whose period does not divide the window, as a forward pass's jobs.
    const bool first = j % 4 != 3;
    const Timings& t = first ? a : b;
    team_jobs += p.team();
    if (p.team())
      p.record(first ? 11 : 22, t.team_ns, t.late_ns, t.helped);
    else
      p.record(first ? 11 : 22, t.solo_ns, 0, 0);
  }
  return static_cast<double>(team_jobs) / jobs;
}

TEST(TeamPolicy, AQuietMachineNeverTriesSolo) {
  TeamPolicy p(2);
  EXPECT_EQ(team_share(p, 2000, {50e3, 2e3, 90e3}, {5e3, 0.4e3, 8e3}), 1.0);
  EXPECT_EQ(p.trials(), 0);
}

TEST(TeamPolicy, AnUnevenSplitOnAQuietMachineIsNoSign) {
  // The worker starts late and runs only 30% of the units (its fair share is 50%): still no trial.
  TeamPolicy p(2);
  EXPECT_EQ(team_share(p, 2000, {50e3, 2e3, 90e3, 0.3}, {5e3, 0.4e3, 8e3, 0.25}), 1.0);
  EXPECT_EQ(p.trials(), 0);
}

TEST(TeamPolicy, GoesSoloWhenTheWorkersGetNoCore) {
  // No late waits at all, but the worker runs 5% of the units and the team is slower than its caller
  // alone (the busy machine where the worker is runnable but off the cores).
  TeamPolicy p(2);
  const double share = team_share(p, 2000, {110e3, 0, 100e3, 0.05}, {11e3, 0, 10e3, 0.0});
  EXPECT_FALSE(p.team());
  EXPECT_LT(share, 0.03);
}

TEST(TeamPolicy, GoesSoloWhenLateWorkersMakeTheTeamSlower) {
  TeamPolicy p(2);
  const double share = team_share(p, 2000, {150e3, 70e3, 100e3}, {15e3, 7e3, 10e3});
  EXPECT_FALSE(p.team());
  // Team trials back off to one window in kMaxBackoff: a few percent of the jobs at most.
  EXPECT_LT(share, 0.03);
  EXPECT_LT(p.trials(), 2000 / 32);
}

TEST(TeamPolicy, StaysATeamWhenItIsStillFaster) {
  // Late workers, but the team still beats the caller alone: solo trials become rare.
  TeamPolicy p(2);
  const double share = team_share(p, 2000, {80e3, 25e3, 100e3}, {8e3, 2.5e3, 10e3});
  EXPECT_TRUE(p.team());
  EXPECT_GT(share, 0.97);
}

TEST(TeamPolicy, ReturnsToTheTeamWhenTheMachineIsQuietAgain) {
  TeamPolicy p(2);
  team_share(p, 500, {150e3, 70e3, 100e3}, {15e3, 7e3, 10e3});
  ASSERT_FALSE(p.team());
  // Quiet again: within the longest backoff (plus the trial), the team is back for good.
  team_share(p, TeamPolicy::kMaxBackoff + 2, {50e3, 1e3, 100e3}, {5e3, 0.1e3, 10e3});
  EXPECT_TRUE(p.team());
  const int trials = p.trials();
  EXPECT_EQ(team_share(p, 500, {50e3, 1e3, 100e3}, {5e3, 0.1e3, 10e3}), 1.0);
  EXPECT_EQ(p.trials(), trials);
}

TEST(TeamPolicy, JudgesClassByClassNotByWindowTotals) {
  // The trial window holds the same jobs as the window before it but in another mix; only a per-class
  // comparison sees that solo is the faster mode for both classes.
  TeamPolicy p(2);
  for (int w = 0; w < 2 && p.team(); ++w)  // team windows: all cheap jobs, late share 40%
    for (int j = 0; j < TeamPolicy::kWindow; ++j) p.record(1, 10e3, 4e3, 0.5);
  // The first solo-trial window: half of it the costly class, which the team never ran in a window.
  for (int j = 0; j < TeamPolicy::kWindow; ++j) {
    ASSERT_FALSE(p.team());
    p.record(j % 2 ? 1 : 2, j % 2 ? 8e3 : 1000e3, 0, 0);
  }
  // Class 2 has no team figure, class 1 was faster solo: solo stays.
  EXPECT_FALSE(p.team());
}

}  // namespace
}  // namespace qe::kernels
