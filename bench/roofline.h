// Machine ceilings measured by qbench itself, so "fraction of roofline" means this box, this boot.
#pragma once

namespace qe::kernels {
class ThreadTeam;
}

namespace qe::bench {

struct Roofline {
  double dram_gbs[2] = {0, 0};       // read bandwidth, GB/s: [0] 1 thread, [1] n threads
  double int8_gmacs[2] = {0, 0};     // int8 multiply-accumulates per second (1e9), best level's dot
  double fma_gflops[2] = {0, 0};     // f32 FMA, counted as 2 flops
  int threads = 1;
  const char* peak_isa = "portable";  // whose instructions the peaks use (the best level the CPU has)
  double l3_bytes = 0;                // the last-level cache the DRAM figures must exceed
};

// Measures with 1 and n_threads threads (about 2 s).
Roofline measure_roofline(int n_threads);

// Per-thread loops; implemented in peak_avx2.cpp on x86 (AVX2), portable C++ elsewhere.
double read_bandwidth_loop(const float* p, long n);  // returns a checksum; reads n floats once
double int8_peak_loop(long iters);                   // returns MACs done
double fma_peak_loop(long iters);                    // returns flops done
// AVX-512 (64-byte loads / vpdpbusd / 512-bit FMA) versions, in peak_avx512.cpp; only called on a CPU
// that has them.
double read_bandwidth_loop_avx512(const float* p, long n);
double int8_peak_loop_avx512(long iters);
double fma_peak_loop_avx512(long iters);

// Reads `bytes` bytes with the roofline's read loop on `team` (the team the kernels being compared
// run on: a read on another team would leave theirs to fall asleep and wake late), from a buffer of its own:
// a cursor walks 512 MiB (and 4x the last-level cache) of huge pages, so the read streams from DRAM; more
// than the buffer holds is read in several passes. Returns the seconds it took. The "vs read" figures put a
// DRAM-bound run against this, timed at the same moments, because a shared machine's DRAM bandwidth drifts
// from one minute to the next.
double timed_read(double bytes, kernels::ThreadTeam& team);

// Size of the largest cache level in bytes (sysfs / sysconf), at least 32 MiB when unknown. Buffers
// that must come from DRAM are made several times larger.
double last_level_cache_bytes();

}  // namespace qe::bench
