// Machine ceilings measured by qbench itself, so "fraction of roofline" means this box, this boot.
#pragma once

namespace qe::bench {

struct Roofline {
  double dram_gbs[2] = {0, 0};       // read bandwidth, GB/s: [0] 1 thread, [1] n threads
  double int8_gmacs[2] = {0, 0};     // int8 multiply-accumulates per second (1e9), best level's dot
  double fma_gflops[2] = {0, 0};     // f32 FMA, counted as 2 flops
  int threads = 1;
};

// Measures with 1 and n_threads threads (about 2 s).
Roofline measure_roofline(int n_threads);

// Per-thread loops; implemented in peak_avx2.cpp on x86 (AVX2), portable C++ elsewhere.
double read_bandwidth_loop(const float* p, long n);  // returns a checksum; reads n floats once
double int8_peak_loop(long iters);                   // returns MACs done
double fma_peak_loop(long iters);                    // returns flops done

}  // namespace qe::bench
