// AVX-512 peak loops, used when the CPU has the avx512 level: the int8 peak is 512-bit vpdpbusd (64
// multiply-accumulates per instruction) and the f32 peak 512-bit FMA, each over 12 independent chains
// (2 ports x 4-5 cycles latency needs >= 10); the read loop takes a whole line per load.
#include <immintrin.h>

#include "roofline.h"

namespace qe::bench {

// One 64-byte load per line, as the AVX-512 kernels stream their weights. A core of a 2-vCPU Xeon
// (Emerald Rapids) reads 16.4-17.0 GB/s this way and 14.7 with the AVX2 loop's two 32-byte loads per
// line (three alternating runs over 7 MB arrays); the AVX-512 q8_0 GEMV read faster than the AVX2 loop
// there (104-113%), so that loop understated the roofline. On a Zen 4 (512-bit loads split in two) both
// loops read the same.
double read_bandwidth_loop_avx512(const float* p, long n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (long i = 0; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
  }
  alignas(64) float out[16];  // not _mm512_reduce_add_ps: GCC 12's header trips -Wuninitialized
  _mm512_store_ps(out, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  double sum = 0;
  for (float v : out) sum += v;
  return sum;
}

double int8_peak_loop_avx512(long iters) {
  __m512i acc[12];
  for (auto& a : acc) a = _mm512_setzero_si512();
  __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-5);
  for (long i = 0; i < iters; ++i) {
    for (auto& a : acc) a = _mm512_dpbusd_epi32(a, u, s);
    __asm__ volatile("" : "+v"(u), "+v"(s));
  }
  __m512i t = acc[0];
  for (int k = 1; k < 12; ++k) t = _mm512_add_epi32(t, acc[k]);
  alignas(64) int out[16];
  _mm512_store_si512(out, t);
  __asm__ volatile("" ::"r"(out[0]) : "memory");
  return static_cast<double>(iters) * 12 * 64;
}

double fma_peak_loop_avx512(long iters) {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  for (long i = 0; i < iters; ++i) {
    for (auto& a : acc) a = _mm512_fmadd_ps(x, y, a);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  __m512 t = acc[0];
  for (int k = 1; k < 12; ++k) t = _mm512_add_ps(t, acc[k]);
  alignas(64) float out[16];
  _mm512_store_ps(out, t);
  __asm__ volatile("" ::"r"(out[0]) : "memory");
  return static_cast<double>(iters) * 12 * 16 * 2;
}

}  // namespace qe::bench
