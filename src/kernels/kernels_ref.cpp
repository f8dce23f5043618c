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
