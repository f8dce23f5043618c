// Scalar reference kernels: the definition every SIMD level is tested against. Integer block sums are
// exact; float accumulation follows ggml's order (per block: sumi * d_w * d_a), sums of squares and
// softmax denominators in double as ggml does.
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }

float dot_q4_0_q8_0(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += ((x[b].qs[j] & 0x0F) - 8) * y[b].qs[j];
      sumi += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
    }
    sumf += static_cast<float>(sumi) * fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d);
  }
  return sumf;
}

float dot_q4_1_q8_1(int64_t n, const BlockQ4_1* x, const BlockQ8_1* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK8_1; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += (x[b].qs[j] & 0x0F) * y[b].qs[j];
      sumi += (x[b].qs[j] >> 4) * y[b].qs[j + 16];
    }
    sumf += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
            fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
  }
  return sumf;
}

float dot_q8_0_q8_0(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += x[b].qs[j] * y[b].qs[j];
    sumf += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
  }
  return sumf;
}

// q6_K: 6-bit q = low nibble from ql | 2 bits from qh, stored +32; 16 groups of 16 with int8 scales.
float dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      const int8_t* sc = x[b].scales + 8 * h;
      const int8_t* a = y[b].qs + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        sumi += sc[is + 0] * q1 * a[l] + sc[is + 2] * q2 * a[l + 32] + sc[is + 4] * q3 * a[l + 64] +
                sc[is + 6] * q4 * a[l + 96];
      }
    }
    sumf += fp16_to_fp32(x[b].d) * y[b].d * static_cast<float>(sumi);
  }
  return sumf;
}

// q5_0: 5-bit q = nibble | bit j of qh (element j), stored +16.
float dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, sizeof(qh));
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = ((x[b].qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16;
      const int q1 = ((x[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      sumi += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
    }
    sumf += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

float dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK8_1; ++b) {
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, sizeof(qh));
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (x[b].qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int q1 = (x[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      sumi += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
    }
    sumf += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
            fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
  }
  return sumf;
}

float dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK4_NL; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j)
      sumi += kIQ4NLValues[x[b].qs[j] & 0x0F] * y[b].qs[j] + kIQ4NLValues[x[b].qs[j] >> 4] * y[b].qs[j + 16];
    sumf += (fp16_to_fp32(y[b].d) * fp16_to_fp32(x[b].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

// ---- k-quants: integer sums per super-block are exact (|sum| < 2^31 for any bytes), then one float
// step per super-block: sumf += d * sum_g(scale_g * isum_g) - dmin * sum_g(min_g * bsum_g), with
// d = fp16(x.d) * y.d (ggml-cpu's generic order, its 8 partial float lanes folded into one sum).

// q2_K: element 128k + 32s + l is bits 2s..2s+1 of qs[32k + l]; group (16 elements) 8k + 2s + l / 16;
// scales[g]: low nibble scale, high nibble min.
float dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int summs = 0, isum = 0;
    for (int g = 0; g < 16; ++g) summs += y[b].bsums[g] * (x[b].scales[g] >> 4);
    for (int i = 0; i < QK_K; ++i) {
      const int k = i / 128, s = (i / 32) % 4, l = i % 32;
      const int q = (x[b].qs[32 * k + l] >> (2 * s)) & 3;
      isum += (x[b].scales[i / 16] & 0x0F) * q * y[b].qs[i];
    }
    const float dall = y[b].d * fp16_to_fp32(x[b].d), dmin = y[b].d * fp16_to_fp32(x[b].dmin);
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}

// q3_K: 16 scales of 6 bits, stored +32: low 4 bits in scales[g % 8] (low nibble for g < 8, high
// nibble after), high 2 bits in scales[8 + g % 4] at bit 2 * (g / 4).
int q3_K_scale(const uint8_t* sc, int g) {
  const int lo = g < 8 ? sc[g] & 0x0F : sc[g - 8] >> 4;
  const int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// q3_K: element 128k + 32s + l: 2 low bits at bits 2s of qs[32k + l], high bit at bit 4k + s of
// hmask[l]; q = low - 4 when the high bit is clear.
float dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int isum = 0;
    for (int i = 0; i < QK_K; ++i) {
      const int k = i / 128, s = (i / 32) % 4, l = i % 32;
      const int lo = (x[b].qs[32 * k + l] >> (2 * s)) & 3;
      const int q = lo - ((x[b].hmask[l] >> (4 * k + s)) & 1 ? 0 : 4);
      isum += q3_K_scale(x[b].scales, i / 16) * q * y[b].qs[i];
    }
    sumf += fp16_to_fp32(x[b].d) * y[b].d * static_cast<float>(isum);
  }
  return sumf;
}

// q4_K / q5_K: 8 scales and 8 mins of 6 bits in 12 bytes (ggml's get_scale_min_k4).
void scale_min_k4(const uint8_t* q, int j, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63, m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// q4_K: element 64p + l (l < 32) is the low nibble of qs[32p + l], 64p + 32 + l the high nibble;
// q5_K adds bit 2p (resp. 2p + 1) of qh[l] as the fifth bit.
template <class Block, bool kHigh>
float dot_q45_K_q8_K(int64_t n, const Block* x, const BlockQ8_K* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int isum = 0, summs = 0;
    for (int g = 0; g < 8; ++g) {
      int sc, m;
      scale_min_k4(x[b].scales, g, sc, m);
      summs += m * (y[b].bsums[2 * g] + y[b].bsums[2 * g + 1]);
      int s = 0;
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = x[b].qs[32 * (g / 2) + l];
        int q = g % 2 ? byte >> 4 : byte & 0x0F;
        if constexpr (kHigh) q |= ((x[b].qh[l] >> g) & 1) << 4;
        s += q * y[b].qs[32 * g + l];
      }
      isum += sc * s;
    }
    const float d = fp16_to_fp32(x[b].d) * y[b].d, dmin = fp16_to_fp32(x[b].dmin) * y[b].d;
    sumf += d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}
float dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  return dot_q45_K_q8_K<BlockQ4_K, false>(n, x, y);
}
float dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  return dot_q45_K_q8_K<BlockQ5_K, true>(n, x, y);
}

// iq4_xs: group g (32 elements) has scale ls = 4 bits of scales_l[g / 2] | 2 bits of scales_h, stored
// +32; its 16 bytes qs[16g..] hold elements 32g + j (low nibble) and 32g + 16 + j (high). Summed in
// integers over the super-block (ggml's generic code rounds per group; its AVX2 code sums as here).
float dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y) {
  float sumf = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int isum = 0;
    for (int g = 0; g < 8; ++g) {
      const int ls =
          ((x[b].scales_l[g / 2] >> (4 * (g % 2))) & 0x0F) | (((x[b].scales_h >> (2 * g)) & 3) << 4);
      int s = 0;
      for (int j = 0; j < 16; ++j) {
        const uint8_t byte = x[b].qs[16 * g + j];
        s += kIQ4NLValues[byte & 0x0F] * y[b].qs[32 * g + j] +
             kIQ4NLValues[byte >> 4] * y[b].qs[32 * g + 16 + j];
      }
      isum += (ls - 32) * s;
    }
    sumf += fp16_to_fp32(x[b].d) * y[b].d * static_cast<float>(isum);
  }
  return sumf;
}

float dot_f16_f32(int64_t n, const uint16_t* x, const float* y) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_bf16_f32(int64_t n, const uint16_t* x, const float* y) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += bf16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_f32_f32(int64_t n, const float* x, const float* y) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

template <class W, class A, float (*Dot)(int64_t, const W*, const A*)>
void tile(int64_t n, const void* w, int64_t ws, int64_t nr, const void* a, int64_t as, int64_t nc, float* y,
          int64_t ldy) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t r = 0; r < nr; ++r)
      y[c * ldy + r] = Dot(n, reinterpret_cast<const W*>(bytes(w) + r * ws),
                           reinterpret_cast<const A*>(bytes(a) + c * as));
}

void quantize_q8_0(const float* x, void* y, int64_t n) { quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), n); }
void quantize_q8_1(const float* x, void* y, int64_t n) { quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), n); }
void quantize_q8_K(const float* x, void* y, int64_t n) { quantize_row_q8_K_ref(x, static_cast<BlockQ8_K*>(y), n); }

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin) {
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < n_rot / 2; ++i) {
      const float x0 = v[2 * i], x1 = v[2 * i + 1];
      v[2 * i] = x0 * cos[i] - x1 * sin[i];
      v[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

void softmax(float* x, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    mx = std::fmax(mx, x[i]);
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void scale(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

}  // namespace

// ggml_compute_forward_rms_norm_f32's order, so llama.cpp's tables use it too (llamacpp_ref.cpp).
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void fill_table(KernelTable& t) {
  t.isa = Isa::ref;
  t.quantize_q8_0 = quantize_q8_0;
  t.quantize_q8_1 = quantize_q8_1;
  t.quantize_q8_K = quantize_q8_K;
  t.tile_q4_0_q8_0 = tile<BlockQ4_0, BlockQ8_0, dot_q4_0_q8_0>;
  t.tile_q4_1_q8_1 = tile<BlockQ4_1, BlockQ8_1, dot_q4_1_q8_1>;
  t.tile_q8_0_q8_0 = tile<BlockQ8_0, BlockQ8_0, dot_q8_0_q8_0>;
  t.tile_q6_K_q8_K = tile<BlockQ6_K, BlockQ8_K, dot_q6_K_q8_K>;
  t.tile_q5_0_q8_0 = tile<BlockQ5_0, BlockQ8_0, dot_q5_0_q8_0>;
  t.tile_q5_1_q8_1 = tile<BlockQ5_1, BlockQ8_1, dot_q5_1_q8_1>;
  t.tile_iq4_nl_q8_0 = tile<BlockIQ4_NL, BlockQ8_0, dot_iq4_nl_q8_0>;
  t.tile_q2_K_q8_K = tile<BlockQ2_K, BlockQ8_K, dot_q2_K_q8_K>;
  t.tile_q3_K_q8_K = tile<BlockQ3_K, BlockQ8_K, dot_q3_K_q8_K>;
  t.tile_q4_K_q8_K = tile<BlockQ4_K, BlockQ8_K, dot_q4_K_q8_K>;
  t.tile_q5_K_q8_K = tile<BlockQ5_K, BlockQ8_K, dot_q5_K_q8_K>;
  t.tile_iq4_xs_q8_K = tile<BlockIQ4_XS, BlockQ8_K, dot_iq4_xs_q8_K>;
  t.tile_f16_f32 = tile<uint16_t, float, dot_f16_f32>;
  t.tile_bf16_f32 = tile<uint16_t, float, dot_bf16_f32>;
  t.tile_f32_f32 = tile<float, float, dot_f32_f32>;
  t.rms_norm = rms_norm;
  t.rope = rope;
  t.softmax = softmax;
  t.silu_mul = silu_mul;
  t.add = add;
  t.scale = scale;
}

}  // namespace qe::kernels::ref
