#include "roofline.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "formats/mapped_file.h"
#include "kernels/kernel_table.h"
#include "kernels/thread_team.h"

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

using ReadLoop = double (*)(const float*, long);

// The read loop with the widest loads this CPU has: the roofline is what the kernels' own loads can read.
ReadLoop best_read_loop() {
#if defined(__x86_64__)
  if (kernels::isa_supported(kernels::Isa::avx512)) return read_bandwidth_loop_avx512;
#endif
  return read_bandwidth_loop;
}

}  // namespace

double last_level_cache_bytes() {
  double best = 0;
  for (int idx = 0; idx < 8; ++idx) {  // cpu0's caches: "32K", "1024K", "32768K", "300M"
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/size");
    std::string v;
    if (!(in >> v) || v.empty()) continue;
    double x = std::atof(v.c_str());
    if (v.back() == 'K') x *= 1024;
    if (v.back() == 'M') x *= 1024 * 1024;
    best = std::max(best, x);
  }
#ifdef _SC_LEVEL3_CACHE_SIZE
  best = std::max(best, static_cast<double>(sysconf(_SC_LEVEL3_CACHE_SIZE)));
#endif
  return std::max(best, 32.0 * 1024 * 1024);
}

double timed_read(double bytes, kernels::ThreadTeam& team) {
  constexpr long kUnit = 16384;  // floats: 64 KiB a unit
  static const long n =
      static_cast<long>(std::max(512.0 * (1 << 20), 4 * last_level_cache_bytes()) / 4) / kUnit * kUnit;
  static const std::shared_ptr<uint8_t[]> buf = [] {
    auto b = allocate_streamed(static_cast<size_t>(n) * 4, "qbench", "read buffer");
    if (!b) throw std::runtime_error(b.error().message());
    std::memset(b->get(), 0, static_cast<size_t>(n) * 4);
    return *b;
  }();
  static long cursor = 0;
  static std::atomic<double> sink{0};
  static const ReadLoop read_loop = best_read_loop();
  long left = std::max<long>(1, static_cast<long>(bytes / 4) / kUnit);   // units
  const double scale = bytes / (static_cast<double>(left) * kUnit * 4);  // to the exact byte count
  double seconds = 0;
  while (left > 0) {
    const long units = std::min(left, n / kUnit);
    if (cursor + units * kUnit > n) cursor = 0;
    const float* p = reinterpret_cast<const float*>(buf.get()) + cursor;
    cursor += units * kUnit;
    left -= units;
    const double t0 = now();
    team.run(units, [&](int64_t b, int64_t e, int) {
      sink.fetch_add(read_loop(p + b * kUnit, (e - b) * kUnit), std::memory_order_relaxed);
    });
    seconds += now() - t0;
  }
  return seconds * scale;
}

Roofline measure_roofline(int n_threads) {
  Roofline rf;
  rf.threads = n_threads;
  rf.l3_bytes = last_level_cache_bytes();
  // At least 512 MiB and 4x the last-level cache, so the read comes from DRAM; pages are touched
  // first so no faults are timed. In huge pages where the OS gives them, as the engine's weights are
  // (formats/mapped_file.h): the roofline is the machine's, not the page size's. 2-core Zen 4 VM, three
  // alternating runs, 4 KiB pages -> huge pages: 26.1-27.7 -> 30.9-32.5 GB/s at 1 thread, 33.7-34.1 ->
  // 35.0-37.2 at 2 (one 4 KiB run read 50.4, the VM's drift).
  const long n = static_cast<long>(std::max(512.0 * (1 << 20), 4 * rf.l3_bytes) / sizeof(float)) & ~255L;
  auto buf = allocate_streamed(n * sizeof(float), "roofline", "buffer");
  if (!buf) throw std::runtime_error(buf.error().message());
  float* p = reinterpret_cast<float*>(buf->get());
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (long i = 0; i < n; ++i) p[i] = 1.0f;
  volatile double sink = 0;
  // The read and the peaks use the best level's instructions: a kernel's roof% is against what this CPU
  // can do.
  const ReadLoop read_loop = best_read_loop();
  double (*int8_loop)(long) = int8_peak_loop;
  double (*fma_loop)(long) = fma_peak_loop;
#if defined(__x86_64__)
  rf.peak_isa = "avx2 (32-byte loads, maddubs+madd+add, 256-bit FMA)";
  if (kernels::isa_supported(kernels::Isa::avx512)) {
    int8_loop = int8_peak_loop_avx512;
    fma_loop = fma_peak_loop_avx512;
    rf.peak_isa = "avx512 (64-byte loads, vpdpbusd zmm, 512-bit FMA)";
  }
#endif
  for (int k = 0; k < 2; ++k) {
    const int t = k == 0 ? 1 : n_threads;
    rf.dram_gbs[k] = best_rate(t, 3, [&](int i, int nt) {
                       const long lo = n / nt * i, hi = i == nt - 1 ? n : n / nt * (i + 1);
                       sink = sink + read_loop(p + lo, hi - lo);
                       return static_cast<double>(hi - lo) * sizeof(float);
                     }) / 1e9;
    rf.int8_gmacs[k] = best_rate(t, 3, [&](int, int) { return int8_loop(10'000'000); }) / 1e9;
    rf.fma_gflops[k] = best_rate(t, 3, [&](int, int) { return fma_loop(10'000'000); }) / 1e9;
  }
  return rf;
}

}  // namespace qe::bench
