// Scalar reference for the x16 f16 / bf16 kernels (layouts and contracts in kernels/interleaved.h): per
// (row, token) two partial sums fed by column parity, s[k % 2] = fma(w, a, s[k % 2]), then s[0] + s[1];
// and the emulation of the AVX512_BF16 "bf16 dot" contract the tests hold that level to.
#include <bit>
#include <cmath>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels {
namespace {

// Value (r, k) of a group of n columns, as stored by interleave_rows.
inline uint16_t f16_at(const uint16_t* g, int64_t, int64_t r, int64_t k) { return g[kInterleave * k + r]; }
inline uint16_t bf16_at(const uint16_t* g, int64_t n, int64_t r, int64_t k) {
  return k < (n & ~int64_t{1}) ? g[32 * (k / 2) + 2 * r + k % 2] : g[kInterleave * k + r];
}

template <uint16_t (*At)(const uint16_t*, int64_t, int64_t, int64_t), float (*Widen)(uint16_t)>
void x16_float(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
               int64_t ldy) {
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint16_t* wg = static_cast<const uint16_t*>(w) + g * kInterleave * n;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ac = reinterpret_cast<const float*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float s[kFloatParts] = {0.0f, 0.0f};
        for (int64_t k = 0; k < n; ++k) s[k % kFloatParts] = std::fma(Widen(At(wg, n, r, k)), ac[k], s[k % kFloatParts]);
        y[c * ldy + g * kInterleave + r] = s[0] + s[1];
      }
    }
  }
}

// vdpbf16ps's input and output handling: bf16 subnormals read as zero, subnormal results flushed, both
// keeping the sign.
inline float daz_bf16(uint16_t h) { return (h & 0x7f80u) == 0 ? std::bit_cast<float>(uint32_t{h & 0x8000u} << 16) : bf16_to_fp32(h); }
inline float ftz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }

}  // namespace

void x16_bf16_dot_ref(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
                      int64_t ldy) {
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint16_t* wg = static_cast<const uint16_t*>(w) + g * kInterleave * n;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ac = reinterpret_cast<const float*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float s[kFloatParts] = {0.0f, 0.0f};
        for (int64_t k = 0; k < n; k += 2) {
          float& p = s[(k / 2) % kFloatParts];
          // An odd n's last column is the pair (w, 0) x (a, 0): the odd step adds +0 (turning -0 into +0).
          const uint16_t w1 = k + 1 < n ? bf16_at(wg, n, r, k + 1) : 0, a1 = k + 1 < n ? fp32_to_bf16(ac[k + 1]) : 0;
          p = ftz(std::fma(daz_bf16(w1), daz_bf16(a1), p));
          p = ftz(std::fma(daz_bf16(bf16_at(wg, n, r, k)), daz_bf16(fp32_to_bf16(ac[k])), p));
        }
        y[c * ldy + g * kInterleave + r] = s[0] + s[1];
      }
    }
  }
}

namespace ref {

void fill_x16_float(KernelTable& t) {
  t.x16_f16_f32 = x16_float<f16_at, fp16_to_fp32>;
  t.x16_bf16_f32 = x16_float<bf16_at, bf16_to_fp32>;
}

}  // namespace ref
}  // namespace qe::kernels
