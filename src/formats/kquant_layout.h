// How the k-quants lay out their scales and codes in a super-block (ggml-common.h's layouts), shared by
// the reference and the importance-weighted quantizers and by the dequantizers. Internal to src/formats.
#pragma once

#include <cstdint>
#include <cstring>

#include "formats/blocks.h"

namespace qe::kquant {

// q4_K / q5_K: 8 groups, each with a 6-bit scale and a 6-bit min, in 12 bytes. Groups 0-3 keep their 6
// bits whole in bytes 0-3 (scales) and 4-7 (mins); groups 4-7 keep their low 4 bits in the nibbles of
// bytes 8-11 and park their top 2 bits in the spare top bits of bytes 0-7 (ggml's get_scale_min_k4).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The inverse of get_scale_min_k4 for 8 codes in [0, 63] each. The weighted q4_K passes its codes
// unclamped, as ggml does: a wrapped negative code (>= 64) then spills into the neighbouring fields, with
// ggml's exact bit operations reproduced here.
inline void set_scales_mins_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = static_cast<uint8_t>((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
      q[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      q[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// q3_K: 16 groups with a 6-bit scale code (scale = code - 32) in 12 bytes. Bytes 0-7 hold the low nibbles
// (group j in byte j % 8, low nibble for j < 8, high nibble for j >= 8); bytes 8-11 hold the top 2 bits,
// group j in byte 8 + j % 4 at bit pair j / 4.
inline void get_scales_q3_K(const uint8_t* packed, int8_t* codes) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? packed[j] & 0x0f : packed[j - 8] >> 4;
    const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    codes[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

// The inverse of get_scales_q3_K for 16 codes in [0, 63] (already offset by 32).
inline void set_scales_q3_K(const int8_t* codes, uint8_t* packed) {
  std::memset(packed, 0, 12);
  for (int j = 0; j < 16; ++j) {
    const int l = codes[j];
    if (j < 8)
      packed[j] = static_cast<uint8_t>(l & 0x0f);
    else
      packed[j - 8] |= static_cast<uint8_t>((l & 0x0f) << 4);
    packed[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
  }
}

// The last step both quantizers of a type share: with the super-block's scales already written into y
// (d, dmin and the packed group scales), recompute each code against the scale a reader will actually
// use (fp16 d times the 6- or 4-bit group code, not the searched float scale), then pack the codes. A
// group whose decoded scale is 0 keeps the codes of its search in L. x: the block's 256 values; L: 256
// codes of scratch, holding the search's codes on entry. Defined in blocks_kquants.cpp.
void finish_q2_K(const float* x, uint8_t* L, BlockQ2_K& y);
void finish_q3_K(const float* x, int8_t* L, BlockQ3_K& y);
void finish_q4_K(const float* x, uint8_t* L, BlockQ4_K& y);
void finish_q5_K(const float* x, uint8_t* L, BlockQ5_K& y);
// q6_K's shared step starts earlier: from the 16 group scales of the search (max_scale: the one of
// largest magnitude, max_abs_scale its magnitude) it writes d and the int8 group scales too.
void finish_q6_K(const float* x, const float* scales, float max_scale, float max_abs_scale, int8_t* L,
                 BlockQ6_K& y);

}  // namespace qe::kquant
