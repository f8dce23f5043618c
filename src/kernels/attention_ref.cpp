// Scalar reference of the flash-attention kernels (kernel_table.h, "attention"): the plain arithmetic
// the SIMD levels vectorise (attention_block.inc), one key at a time. Always compiled; tests hold the
// vector levels to it.
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

constexpr int64_t kB = kAttnBlock;

void attn_block(int64_t n_rows, int64_t d, int64_t ld, const float* q, const float* kt, const float* v,
                const int32_t* nv, float* m, float* l, float* o) {
  float p[kB];
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t n = nv[r];
    const float* qr = q + r * ld;
    float mx = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      float s = 0.0f;
      for (int64_t i = 0; i < d; ++i) s += qr[i] * kt[i * kB + k];
      p[k] = s;
      mx = std::fmax(mx, s);
    }
    const float mnew = std::fmax(m[r], mx);
    const float a = std::exp(m[r] - mnew);  // 0 on the first block (m = -inf)
    float sum = 0.0f;
    for (int64_t k = 0; k < n; ++k) sum += (p[k] = std::exp(p[k] - mnew));
    l[r] = l[r] * a + sum;
    m[r] = mnew;
    float* orow = o + r * ld;
    for (int64_t j = 0; j < ld; ++j) {
      float acc = orow[j] * a;
      for (int64_t k = 0; k < n; ++k) acc += p[k] * v[k * ld + j];
      orow[j] = acc;
    }
  }
}

template <class S>
void attn_rows(const void* src, int64_t stride, int64_t nr, int64_t nc, int64_t nc_out, float* dst, int64_t ldd) {
  for (int64_t r = 0; r < nr; ++r) {
    const S* row = reinterpret_cast<const S*>(static_cast<const uint8_t*>(src) + r * stride);
    for (int64_t c = 0; c < nc_out; ++c) {
      float x = 0.0f;
      if (c < nc) {
        if constexpr (sizeof(S) == 2)
          x = fp16_to_fp32(row[c]);
        else
          x = row[c];
      }
      dst[r * ldd + c] = x;
    }
  }
}

}  // namespace

void fill_attention(KernelTable& t) {
  t.attn_rows_f16 = attn_rows<uint16_t>;
  t.attn_rows_f32 = attn_rows<float>;
  t.attn_block = attn_block;
}

}  // namespace qe::kernels::ref
