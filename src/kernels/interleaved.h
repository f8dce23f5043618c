// Interleaved 16-row weight layout ("x16"), prepared once at load time for q4_0, q4_1, q8_0 and the
// k-quants q4_K, q5_K, q6_K (layouts and contract of those below BlockQ8_0x16).
//
// Why: a plain row-major dot needs a horizontal sum and a scale per (row, block, token); with 16 rows
// interleaved four bytes at a time, one 512-bit vpdpbusd (or two 256-bit halves, or four NEON sdot)
// against ONE broadcast activation dword advances 16 rows at once, and a block's 16 integer sums land
// in the 16 lanes of one vector: one int->float convert and one FMA finish 16 (row, block) products.
// This is the layout idea of ik_llama.cpp's *_r4/_r8 types, at 16 rows.
//
// A 16-row group stores, for each block b of the row length, one BlockXx16 (the same bytes as the 16
// plain blocks, so memory and DRAM traffic are unchanged):
//   d[16] (and m[16] for q4_1): the rows' fp16 scales;
//   qs: dword j of every row, row after row: qs[64 * j + 4 * r + i] = row r's qs[4 * j + i].
// For the 4-bit types dword j's low nibbles are elements 4j..4j+3 and its high nibbles 16+4j..16+4j+3,
// so "k-th 4-element slice" k = 0..7 reads low nibbles of dword k (k < 4) or high nibbles of dword
// k - 4: either way elements 4k..4k+3, i.e. activation dword k of the q8 block.
//
// Every x16 kernel (ref and SIMD) computes, per (row, token), in block order:
//   isum = exact integer dot of the block;  acc = fma(float(isum), d_w * d_a, acc)
//   (q4_1 then also acc = fma(m_w, s_a, acc))
// so all ISA levels give the same bits, and GEMM equals GEMV.
#pragma once

#include <cstdint>
#include <span>

#include "formats/blocks.h"
#include "formats/error.h"

namespace qe::kernels {

struct WeightView;

inline constexpr int64_t kInterleave = 16;

struct BlockQ4_0x16 {
  uint16_t d[kInterleave];
  uint8_t qs[kInterleave * QK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0x16) == kInterleave * sizeof(BlockQ4_0));

struct BlockQ4_1x16 {
  uint16_t d[kInterleave];
  uint16_t m[kInterleave];
  uint8_t qs[kInterleave * QK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1x16) == kInterleave * sizeof(BlockQ4_1));

struct BlockQ8_0x16 {
  uint16_t d[kInterleave];
  int8_t qs[kInterleave * QK8_0];
};
static_assert(sizeof(BlockQ8_0x16) == kInterleave * sizeof(BlockQ8_0));

// ---- k-quants (super-blocks of QK_K = 256, against q8_K activation rows, whose bsums[g] = sum of the
// 16 quants of group g). A 16-row group stores, per super-block b, one BlockXx16 of exactly the bytes of
// the 16 plain super-blocks: the quants move a dword at a time as for q4_0 (same byte positions within
// each dword, so every plain nibble / bit field keeps its meaning), and the scales are re-packed so a
// sub-block's 16 rows are 16 consecutive bytes (one vpmovzxbd away from 16 int32 lanes).
//
// q4_K / q5_K: 8 sub-blocks s of 32 values, 6-bit scale sc[s] and min m[s] (ggml's 12-byte packing,
// get_scale_min_k4), fp16 d, dmin; x = d * sc[s] * q - dmin * m[s], q in 0..15 (q5_K: 0..31).
//   scales_lo[16 * s + r] = (sc[s] & 15) | (m[s] & 15) << 4                               s < 8
//   scales_hi[16 * t + r] = sc[t] >> 4 | (sc[t + 4] >> 4) << 2 | (m[t] >> 4) << 4 | (m[t + 4] >> 4) << 6   t < 4
//   (8 + 8 six-bit values = 12 bytes a row, as in ggml: the size does not grow).
//   qs[64 * j + 4 * r + i] = row r's qs[4 * j + i], j < 32: dword j = 8 * u + k holds, in its low
//   nibbles, values 64u + 4k .. +3 (sub-block 2u, activation dword 16u + k) and in its high nibbles
//   values 64u + 32 + 4k .. +3 (sub-block 2u + 1, activation dword 16u + 8 + k).
//   q5_K: qh[64 * k + 4 * r + i] = row r's qh[4 * k + i], k < 8: bit 2u of each byte is the fifth bit of
//   the low nibble of the same byte of qs dword 8u + k, bit 2u + 1 that of its high nibble.
// q6_K: 16 groups g of 16 values, int8 scale sc[g], fp16 d; x = d * sc[g] * (q - 32), q in 0..63.
//   scales[32 * t + 2 * r + i] = row r's sc[2 * t + i], t < 8 (rows' scale pairs, one int16 pair per row
//   for vpmaddwd / vpdpwssd). With h = 0, 1 the 128-value half and l4 < 8, plain qh dword 8h + l4 gives
//   the two high bits (bits 0-1, 2-3, 4-5, 6-7) of the low nibbles of ql dword 16h + l4 (values
//   128h + 4 l4 + i), the low nibbles of ql dword 16h + 8 + l4 (+32), the high nibbles of ql dword
//   16h + l4 (+64) and the high nibbles of ql dword 16h + 8 + l4 (+96). The quants sit in 16 chunks of
//   192 bytes, chunk 8h + l4 holding those three dwords of the 16 rows, each as 64 bytes [4 * r + i]:
//   ql(h, 0, l4), ql(h, 1, l4) (ql dwords 16h + l4, 16h + 8 + l4) and qh(h, l4). So a kernel that builds
//   the 6-bit values reads the block once, in address order, at an even pace: against ql (2 KiB) then qh
//   (1 KiB), each also read in address order, a one-token AVX-512 kernel went from 84-90% to 91-101% of
//   the DRAM read at 1 thread, 97-98% to 104% at 2 (Zen 4, 1.1B ffn_up, alternating in one process).
//
// Arithmetic contract of the k-quant x16 kernels, identical at every ISA level (so all levels give the
// same bits and GEMM equals GEMV): per (row, token) acc = 0, then for each super-block in order, with a
// the q8_K quants, bs the q8_K bsums, d_a the q8_K (float) scale and d_w, dmin_w the row's fp16 scales:
//   q4_K, q5_K:  IS = sum_s sc[s] * sum_{i in s} q_i * a_i                (exact int32)
//                IM = sum_s m[s] * (bs[2s] + bs[2s + 1])                    (exact int32)
//                acc = fma(float(IS), d_w * d_a, acc);  acc = fma(-float(IM), dmin_w * d_a, acc)
//   q6_K:        IS = sum_g sc[g] * (sum_{i in g} q_i * a_i - 32 * bs[g])   (exact int32)
//                acc = fma(float(IS), d_w * d_a, acc)
// (float(x) rounds to nearest even; the products d_w * d_a are rounded to float once.) The integer sums
// are exact in any order (|IS| < 2^28 for |a| <= 128), so each level sums them however its instructions
// like; only the float steps are fixed. The bsums are used as stored: q8_K rows from quantize_q8_K
// carry the true group sums, so IS is the exact dot with the offsets.
struct BlockQ4_Kx16 {
  uint16_t d[kInterleave];
  uint16_t dmin[kInterleave];
  uint8_t scales_lo[8 * kInterleave];
  uint8_t scales_hi[4 * kInterleave];
  uint8_t qs[kInterleave * QK_K / 2];
};
static_assert(sizeof(BlockQ4_Kx16) == kInterleave * sizeof(BlockQ4_K));

struct BlockQ5_Kx16 {
  uint16_t d[kInterleave];
  uint16_t dmin[kInterleave];
  uint8_t scales_lo[8 * kInterleave];
  uint8_t scales_hi[4 * kInterleave];
  uint8_t qh[kInterleave * QK_K / 8];
  uint8_t qs[kInterleave * QK_K / 2];
};
static_assert(sizeof(BlockQ5_Kx16) == kInterleave * sizeof(BlockQ5_K));

// d and the scales first, as in q4_K / q5_K: a one-token kernel reads a block in address order, and
// the scales it needs first no longer sit 3 KiB past the quants (AVX2 q6_K GEMV 5-10% faster on Zen 3).
struct BlockQ6_Kx16 {
  uint16_t d[kInterleave];
  int8_t scales[kInterleave * QK_K / 16];
  uint8_t q[kInterleave * QK_K * 3 / 4];  // 16 chunks of ql, ql, qh dwords (above)
  // The 16 rows' ql dword 16h + 8p + l4 (p = 0, 1) and qh dword 8h + l4: 64 bytes each.
  static constexpr int64_t ql_offset(int h, int p, int l4) { return 192 * (8 * h + l4) + 64 * p; }
  static constexpr int64_t qh_offset(int h, int l4) { return 192 * (8 * h + l4) + 128; }
  const uint8_t* ql(int h, int p, int l4) const { return q + ql_offset(h, p, l4); }
  const uint8_t* qh(int h, int l4) const { return q + qh_offset(h, l4); }
};
static_assert(sizeof(BlockQ6_Kx16) == kInterleave * sizeof(BlockQ6_K));

// q4_K / q5_K: the 6-bit scale and min of sub-block s of row r from the x16 group's packed scales.
inline int kquant_scale(const uint8_t* lo, const uint8_t* hi, int s, int64_t r) {
  return (lo[16 * s + r] & 15) | ((hi[16 * (s & 3) + r] >> (2 * (s >> 2))) & 3) << 4;
}
inline int kquant_min(const uint8_t* lo, const uint8_t* hi, int s, int64_t r) {
  return (lo[16 * s + r] >> 4) | ((hi[16 * (s & 3) + r] >> (4 + 2 * (s >> 2))) & 3) << 4;
}

// ---- f16 and bf16 ("x16 float"): a 16-row group of n columns is 16 * n values (the bytes of the 16
// plain rows, so memory and DRAM traffic are unchanged), stored so that one vector load gives one or two
// columns of all 16 rows: no horizontal sums, one contiguous stream per group, and in GEMM one widened
// weight vector feeds C FMAs against broadcast activations (C tokens).
//   f16:  value (r, k) at [16 * k + r]                       (one column = 32 bytes, vcvtph2ps -> zmm)
//   bf16: value (r, k) at [32 * (k / 2) + 2 * r + k % 2]     for k < n & ~1: column pairs, one dword per
//         row, the operand shape of vdpbf16ps (64 bytes = 16 rows x 2 columns); when n is odd the last
//         column follows as [16 * (n - 1) + r].
// Arithmetic contract, identical at every level (ref, AVX2, AVX-512, NEON) so GEMM equals GEMV and all
// levels give the same bits: per (row, token) kFloatParts = 2 partial sums, column k feeding part k % 2:
//   s[k % 2] = fma(float(w[r][k]), a[k], s[k % 2])   for k = 0, 1, ..., n - 1 (f32, round to nearest even)
//   y = s[0] + s[1]
// (f16 and bf16 widen to f32 exactly; NaN, Inf and subnormal weights take IEEE's path, no flushing.)
// Two parts give every 16-row vector two independent FMA chains in GEMV, and in GEMM cost C x 2
// accumulators, so a 512-bit tile still holds C = 12 tokens; a different split would change the bits.
//
// bf16 on AVX512_BF16 ("bf16 dot" contract, the AVX-512 level's x16_bf16_f32 when the CPU has it): the
// activations are rounded to bf16 (fp32_to_bf16: round to nearest even, NaN kept quiet) and each column
// pair j = k / 2 is one vdpbf16ps step into part j % 2. Measured on Zen 4 (and as Intel's pseudo-code
// orders it), one step on the part s with weight pair (w0, w1) and activation pair (a0, a1) is
//   s = ftz(fma(w1, a1, s));  s = ftz(fma(w0, a0, s))        (odd column first)
// with bf16 subnormal inputs read as zero and subnormal results flushed to (signed) zero; an odd n's last
// column is the pair (w, 0) x (a, 0). y = s[0] + s[1] as above. x16_bf16_dot_ref below emulates it for
// the tests; levels without AVX512_BF16 keep the exact widened contract above.
inline constexpr int kFloatParts = 2;

// A float GEMM's nc tokens as panels of at most max_cols, of balanced widths (64 tokens at 12: 10 or 11
// each) so no narrow tail panel runs short of independent FMAs: f(c0, cn) for each panel's first token
// and width, in order. The one definition a level's pack step and run step share.
template <class F>
void for_each_panel(int64_t nc, int64_t max_cols, F&& f) {
  const int64_t n_panels = (nc + max_cols - 1) / max_cols;
  for (int64_t p = 0, c0 = 0; p < n_panels; ++p) {
    const int64_t cn = (nc - c0) / (n_panels - p);
    f(c0, cn);
    c0 += cn;
  }
}

// A float GEMM's panels over nc tokens: those of each 64-token chunk (kFloatPackChunk) by for_each_panel,
// chunk after chunk, f(c0, cn) with c0 counted from token 0. So the activations can be packed chunk by
// chunk (in parallel, matmul) and a kernel can run over several chunks in one call (X16FloatSplit::span).
inline constexpr int64_t kFloatPackChunk = 64;
template <class F>
void for_each_chunk_panel(int64_t nc, int64_t max_cols, F&& f) {
  for (int64_t t0 = 0; t0 < nc; t0 += kFloatPackChunk)
    for_each_panel(nc - t0 < kFloatPackChunk ? nc - t0 : kFloatPackChunk, max_cols,
                   [&](int64_t c0, int64_t cn) { f(t0 + c0, cn); });
}

// Reference of the bf16 dot contract (kernels/matmul_x16_float_ref.cpp), a MatmulX16Fn over f32
// activation rows.
void x16_bf16_dot_ref(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t a_stride, int64_t nc,
                      float* y, int64_t ldy);

// q8_0 activation rows carry, after their blocks, one int32 per block: the sum of its 32 quants. The x16
// kernels read the weights' 4-bit / 8-bit values on vpdpbusd's unsigned side (q4: 0..15, q8: w + 128),
// and undo the offset with -8 * sum (q4_0) or -128 * sum (q8_0) as the integer accumulator's start.
inline int64_t q8_0_sums_offset(int64_t n) { return (n / QK8_0 * static_cast<int64_t>(sizeof(BlockQ8_0)) + 3) & ~int64_t{3}; }
inline int64_t q8_0_row_bytes_with_sums(int64_t n) { return q8_0_sums_offset(n) + n / QK8_0 * 4; }

// True when the weight can be interleaved: q4_0, q4_1, q8_0, q4_K, q5_K, q6_K, f16 or bf16, dense rows,
// rows a multiple of 16 (columns a whole number of blocks, as any row of the type).
bool can_interleave(const WeightView& w);

// Writes w's bytes in the x16 layout into dst (exactly w.rows * row bytes), split over n_threads.
// Returns the view of dst (interleave = 16). Error when !can_interleave(w) or dst has the wrong size.
// f16_as_bf16: an f16 weight is written as bf16 x16 instead (same size; the view's type becomes bf16).
// Lossy: f16 has 11 significant bits and bf16 8, so most values are rounded (to nearest even); it buys
// the vdpbf16ps path. Ignored for other types.
Result<WeightView> interleave_rows(const WeightView& w, std::span<uint8_t> dst, int n_threads = 0,
                                   bool f16_as_bf16 = false);

// Row `row` of an x16 weight (interleave_rows' output, w.interleave == 16) in its plain ggml bytes:
// w.row_stride bytes into out, exactly the row interleave_rows read (f16_as_bf16 aside: then the bf16
// values). For a tied embedding kept in x16 for the output matmul: its lookups read rows back this way.
void x16_plain_row(const WeightView& w, int64_t row, void* out);

}  // namespace qe::kernels
