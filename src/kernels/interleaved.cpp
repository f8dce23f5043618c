#include "kernels/interleaved.h"

#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/matmul.h"
#include "kernels/threads.h"

namespace qe::kernels {
namespace {

// Group g, block b: gather the 16 rows' block b into one BlockXx16. The scales move as-is; qs moves a
// dword at a time (see the layout in interleaved.h).
template <class Plain, class X16, int kQsBytes>
void interleave_group(const uint8_t* rows, int64_t row_stride, int64_t nb, X16* out) {
  for (int64_t b = 0; b < nb; ++b) {
    X16& o = out[b];
    for (int64_t r = 0; r < kInterleave; ++r) {
      const auto* x = reinterpret_cast<const Plain*>(rows + r * row_stride) + b;
      o.d[r] = x->d;
      if constexpr (requires { o.m[0]; }) o.m[r] = x->m;
      for (int j = 0; j < kQsBytes / 4; ++j) std::memcpy(&o.qs[64 * j + 4 * r], &x->qs[4 * j], 4);
    }
  }
}

template <class Plain, class X16, int kQsBytes>
void interleave_all(const WeightView& w, uint8_t* dst, int n_threads) {
  const int64_t nb = w.cols / QK8_0;
  const int64_t groups = w.rows / kInterleave;
  const auto* src = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && groups > 1)
  for (int64_t g = 0; g < groups; ++g)
    interleave_group<Plain, X16, kQsBytes>(src + g * kInterleave * w.row_stride, w.row_stride, nb,
                                           reinterpret_cast<X16*>(dst) + g * nb);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block s from a q4_K / q5_K's 12 scale bytes.
void scale_min_k4(const uint8_t* q, int s, uint8_t* sc, uint8_t* m) {
  if (s < 4) {
    *sc = q[s] & 63;
    *m = q[s + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
  }
}

// Moves n_dwords dwords of one row's array into the x16 order: out[64 * j + 4 * r + i] = in[4 * j + i].
void interleave_dwords(const uint8_t* in, int64_t r, int n_dwords, uint8_t* out) {
  for (int j = 0; j < n_dwords; ++j) std::memcpy(out + 64 * j + 4 * r, in + 4 * j, 4);
}

// q4_K / q5_K super-block of row r into the group's packed scales (layout in interleaved.h).
template <class Plain, class X16>
void interleave_k45(const Plain& x, int64_t r, X16& o) {
  o.d[r] = x.d;
  o.dmin[r] = x.dmin;
  uint8_t sc[8], m[8];
  for (int s = 0; s < 8; ++s) scale_min_k4(x.scales, s, &sc[s], &m[s]);
  for (int s = 0; s < 8; ++s) o.scales_lo[16 * s + r] = static_cast<uint8_t>((sc[s] & 15) | (m[s] & 15) << 4);
  for (int t = 0; t < 4; ++t)
    o.scales_hi[16 * t + r] =
        static_cast<uint8_t>(sc[t] >> 4 | (sc[t + 4] >> 4) << 2 | (m[t] >> 4) << 4 | (m[t + 4] >> 4) << 6);
  interleave_dwords(x.qs, r, QK_K / 8, o.qs);
  if constexpr (requires { o.qh[0]; }) interleave_dwords(x.qh, r, QK_K / 32, o.qh);
}

void interleave_k6(const BlockQ6_K& x, int64_t r, BlockQ6_Kx16& o) {
  o.d[r] = x.d;
  for (int t = 0; t < 8; ++t)
    for (int i = 0; i < 2; ++i) o.scales[32 * t + 2 * r + i] = x.scales[2 * t + i];
  for (int h = 0; h < 2; ++h)
    for (int l4 = 0; l4 < 8; ++l4) {
      for (int p = 0; p < 2; ++p) interleave_dwords(x.ql + 4 * (16 * h + 8 * p + l4), r, 1, o.q + o.ql_offset(h, p, l4));
      interleave_dwords(x.qh + 4 * (8 * h + l4), r, 1, o.q + o.qh_offset(h, l4));
    }
}

template <class Plain, class X16>
void interleave_all_k(const WeightView& w, uint8_t* dst, int n_threads) {
  const int64_t nb = w.cols / QK_K;
  const int64_t groups = w.rows / kInterleave;
  const auto* src = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && groups > 1)
  for (int64_t g = 0; g < groups; ++g) {
    auto* out = reinterpret_cast<X16*>(dst) + g * nb;
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t r = 0; r < kInterleave; ++r) {
        const auto& x = reinterpret_cast<const Plain*>(src + (g * kInterleave + r) * w.row_stride)[b];
        if constexpr (std::is_same_v<Plain, BlockQ6_K>) interleave_k6(x, r, out[b]);
        else interleave_k45(x, r, out[b]);
      }
  }
}

// f16 / bf16 (layouts in interleaved.h): group g's 16 rows, column by column (f16) or column pair by
// column pair (bf16), each value converted by `cv` (identity, or f16 -> bf16 for f16_as_bf16).
template <bool kPairs, class Convert>
void interleave_float_all(const WeightView& w, uint8_t* dst, int n_threads, Convert cv) {
  const int64_t n = w.cols, groups = w.rows / kInterleave, n_even = kPairs ? n & ~int64_t{1} : 0;
  const auto* src = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && groups > 1)
  for (int64_t g = 0; g < groups; ++g) {
    uint16_t* out = reinterpret_cast<uint16_t*>(dst) + g * kInterleave * n;
    for (int64_t r = 0; r < kInterleave; ++r) {
      const auto* row = reinterpret_cast<const uint16_t*>(src + (g * kInterleave + r) * w.row_stride);
      for (int64_t k = 0; k < n_even; ++k) out[32 * (k / 2) + 2 * r + k % 2] = cv(row[k]);
      for (int64_t k = n_even; k < n; ++k) out[kInterleave * k + r] = cv(row[k]);
    }
  }
}

// ---- The inverse, one row at a time: row r of an x16 weight back in its plain bytes.

void deinterleave_dwords(const void* in, int64_t r, int n_dwords, void* out) {
  for (int j = 0; j < n_dwords; ++j)
    std::memcpy(static_cast<uint8_t*>(out) + 4 * j, static_cast<const uint8_t*>(in) + 64 * j + 4 * r, 4);
}

template <class Plain, class X16, int kQsBytes>
void plain_row_simple(const X16* group, int64_t nb, int64_t r, Plain* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const X16& o = group[b];
    Plain& x = out[b];
    x.d = o.d[r];
    if constexpr (requires { o.m[0]; }) x.m = o.m[r];
    deinterleave_dwords(o.qs, r, kQsBytes / 4, x.qs);
  }
}

// ggml's 12-byte q4_K / q5_K scale packing from the 8 six-bit scales and mins (inverse of
// get_scale_min_k4: every one of the 96 bits is determined, so the bytes come back exactly).
template <class Plain, class X16>
void plain_row_k45(const X16* group, int64_t nb, int64_t r, Plain* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const X16& o = group[b];
    Plain& x = out[b];
    x.d = o.d[r];
    x.dmin = o.dmin[r];
    int sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
      sc[s] = kquant_scale(o.scales_lo, o.scales_hi, s, r);
      m[s] = kquant_min(o.scales_lo, o.scales_hi, s, r);
    }
    for (int s = 0; s < 4; ++s) {
      x.scales[s] = static_cast<uint8_t>(sc[s] | (sc[s + 4] >> 4) << 6);
      x.scales[s + 4] = static_cast<uint8_t>(m[s] | (m[s + 4] >> 4) << 6);
      x.scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
    }
    deinterleave_dwords(o.qs, r, QK_K / 8, x.qs);
    if constexpr (requires { o.qh[0]; }) deinterleave_dwords(o.qh, r, QK_K / 32, x.qh);
  }
}

void plain_row_k6(const BlockQ6_Kx16* group, int64_t nb, int64_t r, BlockQ6_K* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_Kx16& o = group[b];
    BlockQ6_K& x = out[b];
    x.d = o.d[r];
    for (int t = 0; t < 8; ++t)
      for (int i = 0; i < 2; ++i) x.scales[2 * t + i] = o.scales[32 * t + 2 * r + i];
    for (int h = 0; h < 2; ++h)
      for (int l4 = 0; l4 < 8; ++l4) {
        for (int p = 0; p < 2; ++p) deinterleave_dwords(o.ql(h, p, l4), r, 1, x.ql + 4 * (16 * h + 8 * p + l4));
        deinterleave_dwords(o.qh(h, l4), r, 1, x.qh + 4 * (8 * h + l4));
      }
  }
}

template <bool kPairs>
void plain_row_float(const uint16_t* group, int64_t n, int64_t r, uint16_t* out) {
  const int64_t n_even = kPairs ? n & ~int64_t{1} : 0;
  for (int64_t k = 0; k < n_even; ++k) out[k] = group[32 * (k / 2) + 2 * r + k % 2];
  for (int64_t k = n_even; k < n; ++k) out[k] = group[kInterleave * k + r];
}

}  // namespace

void x16_plain_row(const WeightView& w, int64_t row, void* out) {
  const int64_t g = row / kInterleave, r = row % kInterleave;
  const auto* group = static_cast<const uint8_t*>(w.data) + g * kInterleave * w.row_stride;
  auto* o = static_cast<uint8_t*>(out);
  const int64_t nb32 = w.cols / QK8_0, nb256 = w.cols / QK_K;
  switch (w.type) {
    case GgmlType::Q4_0:
      plain_row_simple<BlockQ4_0, BlockQ4_0x16, QK4_0 / 2>(reinterpret_cast<const BlockQ4_0x16*>(group), nb32, r,
                                                          reinterpret_cast<BlockQ4_0*>(o));
      break;
    case GgmlType::Q4_1:
      plain_row_simple<BlockQ4_1, BlockQ4_1x16, QK4_1 / 2>(reinterpret_cast<const BlockQ4_1x16*>(group), nb32, r,
                                                          reinterpret_cast<BlockQ4_1*>(o));
      break;
    case GgmlType::Q8_0:
      plain_row_simple<BlockQ8_0, BlockQ8_0x16, QK8_0>(reinterpret_cast<const BlockQ8_0x16*>(group), nb32, r,
                                                      reinterpret_cast<BlockQ8_0*>(o));
      break;
    case GgmlType::Q4_K:
      plain_row_k45(reinterpret_cast<const BlockQ4_Kx16*>(group), nb256, r, reinterpret_cast<BlockQ4_K*>(o));
      break;
    case GgmlType::Q5_K:
      plain_row_k45(reinterpret_cast<const BlockQ5_Kx16*>(group), nb256, r, reinterpret_cast<BlockQ5_K*>(o));
      break;
    case GgmlType::Q6_K:
      plain_row_k6(reinterpret_cast<const BlockQ6_Kx16*>(group), nb256, r, reinterpret_cast<BlockQ6_K*>(o));
      break;
    case GgmlType::F16:
      plain_row_float<false>(reinterpret_cast<const uint16_t*>(group), w.cols, r, reinterpret_cast<uint16_t*>(o));
      break;
    default:  // BF16 (can_interleave admits nothing else)
      plain_row_float<true>(reinterpret_cast<const uint16_t*>(group), w.cols, r, reinterpret_cast<uint16_t*>(o));
      break;
  }
}

bool can_interleave(const WeightView& w) {
  int64_t block = 0;
  switch (w.type) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q8_0: block = QK8_0; break;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: block = QK_K; break;
    case GgmlType::F16:
    case GgmlType::BF16: block = 1; break;
    default: return false;
  }
  return w.interleave == 1 && w.data && w.rows > 0 && w.rows % kInterleave == 0 && w.cols > 0 && w.cols % block == 0 &&
         w.row_stride == static_cast<int64_t>(ggml_row_bytes(w.type, static_cast<uint64_t>(w.cols)));
}

Result<WeightView> interleave_rows(const WeightView& w, std::span<uint8_t> dst, int n_threads, bool f16_as_bf16) {
  if (!can_interleave(w))
    return Error{"", "interleave", std::string(ggml_type_name(w.type)) + " weight " + std::to_string(w.rows) + " x " +
                                       std::to_string(w.cols) + " cannot be interleaved"};
  if (static_cast<int64_t>(dst.size()) != w.rows * w.row_stride)
    return Error{"", "interleave", "destination holds " + std::to_string(dst.size()) + " bytes, need " +
                                       std::to_string(w.rows * w.row_stride)};
  const int nt = n_threads > 0 ? n_threads : default_thread_count();
  const auto same = [](uint16_t v) { return v; };
  WeightView out = w;
  switch (w.type) {
    case GgmlType::F16:
      if (f16_as_bf16) {
        interleave_float_all<true>(w, dst.data(), nt, [](uint16_t v) { return fp32_to_bf16(fp16_to_fp32(v)); });
        out.type = GgmlType::BF16;  // same row bytes: 2 per value
      } else {
        interleave_float_all<false>(w, dst.data(), nt, same);
      }
      break;
    case GgmlType::BF16: interleave_float_all<true>(w, dst.data(), nt, same); break;
    case GgmlType::Q4_0: interleave_all<BlockQ4_0, BlockQ4_0x16, QK4_0 / 2>(w, dst.data(), nt); break;
    case GgmlType::Q4_1: interleave_all<BlockQ4_1, BlockQ4_1x16, QK4_1 / 2>(w, dst.data(), nt); break;
    case GgmlType::Q8_0: interleave_all<BlockQ8_0, BlockQ8_0x16, QK8_0>(w, dst.data(), nt); break;
    case GgmlType::Q4_K: interleave_all_k<BlockQ4_K, BlockQ4_Kx16>(w, dst.data(), nt); break;
    case GgmlType::Q5_K: interleave_all_k<BlockQ5_K, BlockQ5_Kx16>(w, dst.data(), nt); break;
    default: interleave_all_k<BlockQ6_K, BlockQ6_Kx16>(w, dst.data(), nt); break;
  }
  out.data = dst.data();
  out.interleave = static_cast<int32_t>(kInterleave);
  return out;
}

}  // namespace qe::kernels
