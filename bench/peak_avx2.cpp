// AVX2 peak loops. The int8 peak is the instruction sequence every AVX2 int8 dot needs per 32 products
// (maddubs -> madd -> add into int32), with 10 independent chains to cover latency; the f32 peak is 10
// independent FMA chains (Zen 3 / Skylake: 2 FMA ports x 4-5 cycles latency -> >= 8 chains).
#include <immintrin.h>

#include "roofline.h"

namespace qe::bench {

double read_bandwidth_loop(const float* p, long n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (long i = 0; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

double int8_peak_loop(long iters) {
  __m256i acc[10];
  for (auto& a : acc) a = _mm256_setzero_si256();
  __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-5);
  const __m256i ones = _mm256_set1_epi16(1);
  for (long i = 0; i < iters; ++i) {
    for (auto& a : acc) a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
    __asm__ volatile("" : "+x"(u), "+x"(s));  // keep the products inside the loop
  }
  int out[8];
  __m256i t = acc[0];
  for (int k = 1; k < 10; ++k) t = _mm256_add_epi32(t, acc[k]);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), t);
  __asm__ volatile("" ::"r"(out[0]) : "memory");
  return static_cast<double>(iters) * 10 * 32;
}

double fma_peak_loop(long iters) {
  __m256 acc[10];
  for (auto& a : acc) a = _mm256_setzero_ps();
  __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f);
  for (long i = 0; i < iters; ++i) {
    for (auto& a : acc) a = _mm256_fmadd_ps(x, y, a);
    __asm__ volatile("" : "+x"(x), "+x"(y));
  }
  float out[8];
  __m256 t = acc[0];
  for (int k = 1; k < 10; ++k) t = _mm256_add_ps(t, acc[k]);
  _mm256_storeu_ps(out, t);
  __asm__ volatile("" ::"r"(out[0]) : "memory");
  return static_cast<double>(iters) * 10 * 8 * 2;
}

}  // namespace qe::bench
