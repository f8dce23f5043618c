// Whether the thread team should work as a team or leave a job to its caller alone: measured, not
// guessed.
//
// On a quiet machine the team always wins. With another busy process on the cores, the team's threads
// outnumber the free cores; a worker is preempted while it holds a chunk, and every job it belongs to
// waits for it (a scheduler slice, milliseconds). Whether the team still beats its caller alone then
// depends on the machine, its scheduler and the job, so the policy times both:
//
//   team   The default. Each window of kWindow jobs, the caller's wait for late workers (after it ran
//          out of chunks itself) is summed, and so is the share of the units the other threads ran.
//          Either sign means something else holds the cores, and the next window is a solo trial:
//          the waits above kLateShare of the window's time (a worker preempted while it held a
//          chunk), or the workers running under kMinHelp of their fair share of the units (workers
//          that do not get a core in time to claim any: the caller does the work and still pays for
//          the wake-ups; measured with one busy process on 2 cores, the caller ran 84-100% of the
//          units in windows with no late waits at all, and such windows were ~10% slower than solo).
//   solo   Jobs run on the caller alone (the workers go to sleep). After a trial, or every `backoff`
//          windows while solo, the other mode is tried for one window.
//
// A trial is judged per job class (the job's code and unit count: one matmul shape, one attention),
// comparing the class's mean time in the trial window with its mean in the last window of the other
// mode, weighted by how often the class ran in the trial: so a window that happens to hold more of the
// costly jobs cannot tip the verdict. Solo backs off (4 → 8 → ... → 256 windows between team trials)
// while it keeps winning; team trials that lose make the next solo trial wait longer in the same way.
// A quiet machine never starts a trial, so it pays nothing but two clock reads a job.
//
// No threads and no clock in here: ThreadTeam feeds the times, and the tests feed made-up ones.
#pragma once

#include <array>
#include <cstdint>

namespace qe::kernels {

class TeamPolicy {
 public:
  static constexpr int kWindow = 256;          // jobs per window: about one decode step of a 1B model
  static constexpr double kLateShare = 0.15;   // late-worker waits above this share of the time: a trial
  static constexpr double kMinHelp = 0.4;      // workers below this part of their fair share: a trial
  static constexpr int kMinBackoff = 4, kMaxBackoff = 256;  // windows between trials

  // For a team of n_threads (the caller included).
  explicit TeamPolicy(int n_threads) : fair_help_(n_threads > 1 ? 1.0 - 1.0 / n_threads : 0.0) {}

  // Whether the next job should use the team.
  bool team() const { return team_; }

  // One finished job: `key` names its class (code and size), `ns` its whole time, `late_ns` the part
  // the caller spent waiting for other threads after its own chunks, `helped` the share of its units
  // that the other threads ran (1 - 1 / n_threads when a quiet team splits it evenly; both 0 when solo).
  void record(uint64_t key, double ns, double late_ns, double helped);

  // For tests and benchmarks: how many trials ran and how many times the mode changed.
  int trials() const { return trials_; }
  int switches() const { return switches_; }

 private:
  struct ClassStats {
    uint64_t key = 0;
    double mean_ns[2] = {0, 0};   // by mode (0 solo, 1 team): the mean over its last window
    double sum_ns = 0;            // this window
    uint32_t count = 0;           // this window
  };
  static constexpr int kClasses = 128;  // more than a forward pass's distinct jobs; a clash only resets one

  void end_window();
  bool trial_wins() const;  // judged over the classes of the window that just ended

  std::array<ClassStats, kClasses> classes_{};
  bool team_ = true;
  bool trial_ = false;          // the current window tries the mode in team_
  int jobs_ = 0;                // in this window
  const double fair_help_;      // the share of a job's units the other threads run when all have a core
  double window_ns_ = 0, window_late_ns_ = 0, window_help_ns_ = 0;  // help: sum of ns * helped
  int windows_until_trial_ = 0;  // solo: team trial when it reaches 0; team: a solo trial may not start before
  int solo_backoff_ = kMinBackoff, team_backoff_ = 0;
  int trials_ = 0, switches_ = 0;
};

}  // namespace qe::kernels
