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

template <class S>
float at(const S* p, int64_t i) {
  if constexpr (sizeof(S) == 2) return fp16_to_fp32(p[i]);
  else return p[i];
}

template <class S>
void attn_block(int64_t n_rows, int64_t d, int64_t ld, const float* q, const void* kt_, int64_t ks, const void* v_,
                int64_t vs, const int32_t* nv, float* m, float* l, float* o,
                const AttnBlockRef* /*next: a speed hint*/) {
  const S* kt = static_cast<const S*>(kt_);
  const S* v = static_cast<const S*>(v_);
  float p[kB];
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t n = nv[r];
    const float* qr = q + r * ld;
    float mx = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      float s = 0.0f;
      for (int64_t i = 0; i < d; ++i) s += qr[i] * at(kt, i * ks + k);
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
    for (int64_t j = 0; j < d; ++j) {
      float acc = orow[j] * a;
      for (int64_t k = 0; k < n; ++k) acc += p[k] * at(v, k * vs + j);
      orow[j] = acc;
    }
  }
}

}  // namespace

void fill_attention(KernelTable& t) {
  t.attn_block_f16 = attn_block<uint16_t>;
  t.attn_block_f32 = attn_block<float>;
}

}  // namespace qe::kernels::ref
