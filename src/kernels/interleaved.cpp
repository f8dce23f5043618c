#include "kernels/interleaved.h"

#include <cstring>
#include <string>

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

}  // namespace

bool can_interleave(const WeightView& w) {
  const bool type_ok = w.type == GgmlType::Q4_0 || w.type == GgmlType::Q4_1 || w.type == GgmlType::Q8_0;
  return type_ok && w.interleave == 1 && w.data && w.rows > 0 && w.rows % kInterleave == 0 && w.cols > 0 &&
         w.cols % QK8_0 == 0 && w.row_stride == static_cast<int64_t>(ggml_row_bytes(w.type, static_cast<uint64_t>(w.cols)));
}

Result<WeightView> interleave_rows(const WeightView& w, std::span<uint8_t> dst, int n_threads) {
  if (!can_interleave(w))
    return Error{"", "interleave", std::string(ggml_type_name(w.type)) + " weight " + std::to_string(w.rows) + " x " +
                                       std::to_string(w.cols) + " cannot be interleaved"};
  if (static_cast<int64_t>(dst.size()) != w.rows * w.row_stride)
    return Error{"", "interleave", "destination holds " + std::to_string(dst.size()) + " bytes, need " +
                                       std::to_string(w.rows * w.row_stride)};
  const int nt = n_threads > 0 ? n_threads : default_thread_count();
  switch (w.type) {
    case GgmlType::Q4_0: interleave_all<BlockQ4_0, BlockQ4_0x16, QK4_0 / 2>(w, dst.data(), nt); break;
    case GgmlType::Q4_1: interleave_all<BlockQ4_1, BlockQ4_1x16, QK4_1 / 2>(w, dst.data(), nt); break;
    default: interleave_all<BlockQ8_0, BlockQ8_0x16, QK8_0>(w, dst.data(), nt); break;
  }
  WeightView out = w;
  out.data = dst.data();
  out.interleave = static_cast<int32_t>(kInterleave);
  return out;
}

}  // namespace qe::kernels
