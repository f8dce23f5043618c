#include "kernels/thread_team_policy.h"

#include <algorithm>

namespace qe::kernels {

void TeamPolicy::record(uint64_t key, double ns, double late_ns, double helped) {
  // Fibonacci hashing: the top 7 bits of key * 2^64/phi spread code addresses and sizes over the slots.
  ClassStats& c = classes_[(key * 0x9E3779B97F4A7C15ull) >> 57];
  if (c.key != key) c = ClassStats{key};
  c.sum_ns += ns;
  ++c.count;
  window_ns_ += ns;
  window_late_ns_ += late_ns;
  window_help_ns_ += ns * helped;
  if (++jobs_ == kWindow) end_window();
}

bool TeamPolicy::trial_wins() const {
  // The trial's time against what the same jobs cost in the other mode, class by class.
  const int other = team_ ? 0 : 1;
  double trial = 0, before = 0;
  for (const ClassStats& c : classes_) {
    if (c.count == 0 || c.mean_ns[other] <= 0) continue;
    trial += c.sum_ns;
    before += c.count * c.mean_ns[other];
  }
  return before > 0 && trial < before;
}

void TeamPolicy::end_window() {
  const bool judged_trial = trial_;
  const bool wins = trial_ && trial_wins();
  const int mode = team_ ? 1 : 0;
  for (ClassStats& c : classes_) {
    if (c.count > 0) c.mean_ns[mode] = c.sum_ns / c.count;
    c.sum_ns = 0;
    c.count = 0;
  }
  const bool busy = window_late_ns_ > kLateShare * window_ns_ ||
                    window_help_ns_ < kMinHelp * fair_help_ * window_ns_;
  jobs_ = 0;
  window_ns_ = window_late_ns_ = window_help_ns_ = 0;

  if (judged_trial) {
    trial_ = false;
    if (wins) {
      ++switches_;
      if (team_) {  // the machine is quiet again
        solo_backoff_ = kMinBackoff;
        team_backoff_ = 0;
        windows_until_trial_ = 0;
      } else {
        windows_until_trial_ = solo_backoff_;
      }
    } else if (team_) {  // still busy: stay solo, try the team again later than last time
      team_ = false;
      solo_backoff_ = std::min(2 * solo_backoff_, kMaxBackoff);
      windows_until_trial_ = solo_backoff_;
    } else {  // late workers, but the team is still faster: do not try solo again soon
      team_ = true;
      team_backoff_ = std::clamp(2 * team_backoff_, kMinBackoff, kMaxBackoff);
      windows_until_trial_ = team_backoff_;
    }
    return;
  }
  if (team_) {
    if (windows_until_trial_ > 0) {
      --windows_until_trial_;
    } else if (busy) {
      team_ = false;
      trial_ = true;
      ++trials_;
    }
  } else if (--windows_until_trial_ <= 0) {
    team_ = true;
    trial_ = true;
    ++trials_;
  }
}

}  // namespace qe::kernels
