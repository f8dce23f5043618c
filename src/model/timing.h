// The engine's clock: wall time in milliseconds, as llama.cpp's perf counters report it.
#pragma once

#include <chrono>

namespace qe::model {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace qe::model
