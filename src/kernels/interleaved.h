// Interleaved 16-row weight layout ("x16"), prepared once at load time for q4_0, q4_1 and q8_0.
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

// q8_0 activation rows carry, after their blocks, one int32 per block: the sum of its 32 quants. The x16
// kernels read the weights' 4-bit / 8-bit values on vpdpbusd's unsigned side (q4: 0..15, q8: w + 128),
// and undo the offset with -8 * sum (q4_0) or -128 * sum (q8_0) as the integer accumulator's start.
inline int64_t q8_0_sums_offset(int64_t n) { return (n / QK8_0 * static_cast<int64_t>(sizeof(BlockQ8_0)) + 3) & ~int64_t{3}; }
inline int64_t q8_0_row_bytes_with_sums(int64_t n) { return q8_0_sums_offset(n) + n / QK8_0 * 4; }

// True when the weight can be interleaved: q4_0, q4_1 or q8_0, dense rows, rows a multiple of 16.
bool can_interleave(const WeightView& w);

// Writes w's bytes in the x16 layout into dst (exactly w.rows * row bytes), split over n_threads.
// Returns the view of dst (interleave = 16). Error when !can_interleave(w) or dst has the wrong size.
Result<WeightView> interleave_rows(const WeightView& w, std::span<uint8_t> dst, int n_threads = 0);

}  // namespace qe::kernels
