#include "roofline.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

namespace qe::bench {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Best of `reps` runs of f on `threads` threads; f returns the work done by one thread.
template <class F>
double best_rate(int threads, int reps, F f) {
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    double work = 0;
    const double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : work)
    work += f(omp_get_thread_num(), omp_get_num_threads());
    best = std::max(best, work / (now() - t0));
  }
  return best;
}

}  // namespace

Roofline measure_roofline(int n_threads) {
  Roofline rf;
  rf.threads = n_threads;
  // 512 MiB: 16x a 32 MiB L3, so the read comes from DRAM; pages touched first so no faults are timed.
  const long n = 512L << 18;
  std::unique_ptr<float, decltype(&std::free)> buf(static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))), &std::free);
  float* p = buf.get();
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (long i = 0; i < n; ++i) p[i] = 1.0f;
  volatile double sink = 0;
  for (int k = 0; k < 2; ++k) {
    const int t = k == 0 ? 1 : n_threads;
    rf.dram_gbs[k] = best_rate(t, 3, [&](int i, int nt) {
                       const long lo = n / nt * i, hi = i == nt - 1 ? n : n / nt * (i + 1);
                       sink = sink + read_bandwidth_loop(p + lo, hi - lo);
                       return static_cast<double>(hi - lo) * sizeof(float);
                     }) / 1e9;
    rf.int8_gmacs[k] = best_rate(t, 3, [](int, int) { return int8_peak_loop(20'000'000); }) / 1e9;
    rf.fma_gflops[k] = best_rate(t, 3, [](int, int) { return fma_peak_loop(20'000'000); }) / 1e9;
  }
  return rf;
}

}  // namespace qe::bench
