// llama.cpp's numerics, AVX2, for q5_0, q5_1, iq4_nl, the k-quants and iq4_xs: the dots of
// llamacpp_kquants_scalar.inc (which says which ggml path each type takes) with their integer parts in
// AVX2 and the float steps in ggml's order, so the bits agree with the reference and with llama.cpp.
// Filled by llamacpp_avx2.cpp over the scalar entries (the q8_K quantizer stays ggml's scalar one).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/kquant_layout.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

void fill_llamacpp_kquants(KernelTable& t);

namespace {

inline const uint8_t* bytes(const void* p) {
  return static_cast<const uint8_t*>(p);
}
inline float half_to_float(uint16_t h) {
  return _cvtsh_ss(h);
}

// hsum_float_8: (high half + low half), then (0 + 2) + (1 + 3).
inline float hsum8_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 8 x int32, lane i = sum of u[4i..4i+3] * s[4i..4i+3] for unsigned u, signed s (exact here: |u| <= 127
// or u <= 63 against |s| <= 127 keeps maddubs below saturation).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_set1_epi16(1), _mm256_maddubs_epi16(u, s));
}
inline __m256i dot_s8s8(__m256i x, __m256i y) {
  return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// The 32 nibbles of a q4_0-ordered block: low nibbles are elements 0..15, high nibbles 16..31.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set1_epi8(0x0F), _mm256_set_m128i(_mm_srli_epi16(t, 4), t));
}

// Byte j = 0xFF where bit j of the 32-bit qh is set, else 0.
inline __m256i bits32(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(h)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

float dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; ++b) {
    // q - 16: without the fifth bit the byte is nibble | 0xF0, i.e. nibble - 16 as int8
    const __m256i qx = _mm256_or_si256(
        nibbles32(x[b].qs), _mm256_andnot_si256(bits32(x[b].qh), _mm256_set1_epi8(static_cast<char>(0xF0))));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const __m256 dd = _mm256_set1_ps(half_to_float(x[b].d) * half_to_float(y[b].d));
    acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(dot_s8s8(qx, qy)), acc);
  }
  return hsum8_ps(acc);
}

float dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y) {
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    summs = std::fma(half_to_float(x[b].m), half_to_float(y[b].s), summs);
    const __m256i qx =
        _mm256_or_si256(nibbles32(x[b].qs), _mm256_and_si256(bits32(x[b].qh), _mm256_set1_epi8(0x10)));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const __m256 dd = _mm256_set1_ps(half_to_float(x[b].d) * half_to_float(y[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(qx, qy)), dd, acc);
  }
  return hsum8_ps(acc) + summs;
}

float dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
  const __m256i table = _mm256_set_m128i(t, t);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    const __m256i qx = _mm256_shuffle_epi8(table, nibbles32(x[b].qs));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const int isum = hsum_epi32(dot_s8s8(qx, qy));
    acc = std::fma(static_cast<float>(isum), half_to_float(x[b].d) * half_to_float(y[b].d), acc);
  }
  return acc;
}

// Scale pair (s0 for elements 0..15 of a 32-element vector, s1 for 16..31) as 16 int16 lanes, for
// madd against maddubs' pair sums.
inline __m256i scale_pair(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(s1)), _mm_set1_epi16(static_cast<short>(s0)));
}

float dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockQ6_K& w = x[b];
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh + 32 * h));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4))};
      for (int c = 0; c < 4; ++c) {
        const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 128 * h + 32 * c));
        // (q - 32) * q8 in int16 pairs: q * q8 - 32 * q8, each side below saturation
        const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q[c], q8), _mm256_maddubs_epi16(m32, q8));
        const int g = 8 * h + 2 * c;
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(w.scales[g], w.scales[g + 1]), p16));
      }
    }
    const float d = y[b].d * half_to_float(w.d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8_ps(acc);
}

float dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y) {
  const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockQ3_K& w = x[b];
    int sc[16];
    for (int k = 0; k < 16; ++k) {
      const int low = k < 8 ? w.scales[k] & 0x0F : w.scales[k - 8] >> 4;
      sc[k] = (low | ((w.scales[8 + k % 4] >> (2 * (k / 4))) & 3) << 4) - 32;
    }
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.hmask));
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs + 32 * h));
      for (int c = 0; c < 4; ++c) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * c), m3);
        // 4 where the high bit is clear: (q & 3) - 4 * !h as two maddubs, as ggml subtracts them
        const __m256i clear =
            _mm256_andnot_si256(_mm256_and_si256(_mm256_srli_epi16(hb, 4 * h + c), one), one);
        const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 128 * h + 32 * c));
        const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(lo, q8),
                                             _mm256_maddubs_epi16(_mm256_slli_epi16(clear, 2), q8));
        const int g = 8 * h + 2 * c;
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(sc[g], sc[g + 1]), p16));
      }
    }
    const float d = y[b].d * half_to_float(w.d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8_ps(acc);
}

float dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y) {
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockQ2_K& w = x[b];
    const float d = y[b].d * half_to_float(w.d);
    const float dmin = -y[b].d * half_to_float(w.dmin);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums)), acc);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs + 32 * h));
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * c), m3);
        const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 128 * h + 32 * c));
        const int g = 8 * h + 2 * c;
        sumi =
            _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(w.scales[g] & 0x0F, w.scales[g + 1] & 0x0F),
                                                     _mm256_maddubs_epi16(q, q8)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8_ps(acc);
}

float dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
  const __m256i table = _mm256_set_m128i(t, t);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockIQ4_XS& w = x[b];
    __m256i sumi = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const int ls =
          (((w.scales_l[s / 2] >> (4 * (s % 2))) & 0x0F) | ((w.scales_h >> (2 * s)) & 3) << 4) - 32;
      const __m256i q = _mm256_shuffle_epi8(table, nibbles32(w.qs + 16 * s));
      const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 32 * s));
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(q8, q));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16(static_cast<short>(ls))));
    }
    const float d = half_to_float(w.d) * y[b].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8_ps(acc);
}

inline void scales_mins_k4(const uint8_t* packed, int* sc, int* m) {
  for (int s = 0; s < 8; ++s) {
    uint8_t a, c;
    kquant::get_scale_min_k4(s, packed, &a, &c);
    sc[s] = a;
    m[s] = c;
  }
}

float dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockQ5_K& w = x[b];
    int sc[8], m[8];
    scales_mins_k4(w.scales, sc, m);
    int imin = 0;
    for (int s = 0; s < 8; ++s) imin += m[s] * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
    const float d = y[b].d * half_to_float(w.d);
    const float dmin = -y[b].d * half_to_float(w.dmin);
    summs = std::fma(dmin, static_cast<float>(imin), summs);
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh));
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs + 32 * j));
      for (int half = 0; half < 2; ++half) {
        const int s = 2 * j + half;
        const __m256i lo = half ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4) : _mm256_and_si256(raw, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, s), _mm256_set1_epi8(1));
        const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
        const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 32 * s));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_set1_epi16(static_cast<short>(sc[s])),
                                                        _mm256_maddubs_epi16(q, q8)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8_ps(acc) + summs;
}

template <bool kGemm>
float dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  float acc = 0.0f, acc_min = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockQ4_K& w = x[b];
    int sc[8], m[8];
    scales_mins_k4(w.scales, sc, m);
    const float dd = half_to_float(w.d) * y[b].d, dm = half_to_float(w.dmin) * y[b].d;
    int isum = 0, imin = 0;
    for (int j = 0; j < 4; ++j) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs + 32 * j));
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 64 * j));
      const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs + 64 * j + 32));
      const int da = hsum_epi32(dot_u8s8(_mm256_and_si256(raw, m4), qa));
      const int db = hsum_epi32(dot_u8s8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), qb));
      isum += sc[2 * j] * da + sc[2 * j + 1] * db;
      imin += m[2 * j] * (y[b].bsums[4 * j] + y[b].bsums[4 * j + 1]) +
              m[2 * j + 1] * (y[b].bsums[4 * j + 2] + y[b].bsums[4 * j + 3]);
      if (kGemm) {  // the GEMM rounds per pair of sub-blocks
        acc = std::fma(static_cast<float>(isum), dd, acc);
        acc_min = std::fma(static_cast<float>(imin), dm, acc_min);
        isum = imin = 0;
      }
    }
    if (!kGemm) {
      acc = std::fma(static_cast<float>(isum), dd, acc);
      acc_min = std::fma(static_cast<float>(imin), dm, acc_min);
    }
  }
  return acc - acc_min;
}

template <typename W, typename A, float (*kDot)(int64_t, const W*, const A*)>
void tile(int64_t n, const void* w, int64_t w_stride, int64_t nr, const void* a, int64_t a_stride, int64_t nc,
          float* y, int64_t ldy) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t r = 0; r < nr; ++r)
      y[c * ldy + r] = kDot(n, reinterpret_cast<const W*>(bytes(w) + r * w_stride),
                            reinterpret_cast<const A*>(bytes(a) + c * a_stride));
}

// Columns below nc - nc % 4 take the GEMM chain (llamacpp_kquants_scalar.inc, tile_q4_K).
void tile_q4_K(int64_t n, const void* w, int64_t w_stride, int64_t nr, const void* a, int64_t a_stride,
               int64_t nc, float* y, int64_t ldy) {
  const int64_t n_gemm = nc - nc % 4;
  for (int64_t c = 0; c < nc; ++c) {
    const auto* ac = reinterpret_cast<const BlockQ8_K*>(bytes(a) + c * a_stride);
    for (int64_t r = 0; r < nr; ++r) {
      const auto* wr = reinterpret_cast<const BlockQ4_K*>(bytes(w) + r * w_stride);
      y[c * ldy + r] = c < n_gemm ? dot_q4_K_q8_K<true>(n, wr, ac) : dot_q4_K_q8_K<false>(n, wr, ac);
    }
  }
}

}  // namespace

void fill_llamacpp_kquants(KernelTable& t) {
  t.tile_q5_0_q8_0 = tile<BlockQ5_0, BlockQ8_0, dot_q5_0_q8_0>;
  t.tile_q5_1_q8_1 = tile<BlockQ5_1, BlockQ8_1, dot_q5_1_q8_1>;
  t.tile_iq4_nl_q8_0 = tile<BlockIQ4_NL, BlockQ8_0, dot_iq4_nl_q8_0>;
  t.tile_q6_K_q8_K = tile<BlockQ6_K, BlockQ8_K, dot_q6_K_q8_K>;
  t.tile_q5_K_q8_K = tile<BlockQ5_K, BlockQ8_K, dot_q5_K_q8_K>;
  t.tile_q4_K_q8_K = tile_q4_K;
  t.tile_q3_K_q8_K = tile<BlockQ3_K, BlockQ8_K, dot_q3_K_q8_K>;
  t.tile_q2_K_q8_K = tile<BlockQ2_K, BlockQ8_K, dot_q2_K_q8_K>;
  t.tile_iq4_xs_q8_K = tile<BlockIQ4_XS, BlockQ8_K, dot_iq4_xs_q8_K>;
}

}  // namespace qe::kernels::avx2
