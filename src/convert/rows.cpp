#include "convert/rows.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/blocks.h"
#include "formats/error.h"
#include "kernels/kernel_table.h"

namespace qe::convert {
namespace {

// The active level's kernel for the types it covers (byte-identical to the reference at every level),
// the block traits' reference for the rest (f32, q8_1, q6_K).
kernels::RowToF32Fn to_f32_fn(const kernels::KernelTable& k, GgmlType t, const BlockTraits& traits) {
  switch (t) {
    case GgmlType::F16:
      return k.to_f32_f16;
    case GgmlType::BF16:
      return k.to_f32_bf16;
    case GgmlType::Q4_0:
      return k.to_f32_q4_0;
    case GgmlType::Q4_1:
      return k.to_f32_q4_1;
    case GgmlType::Q8_0:
      return k.to_f32_q8_0;
    default:
      return traits.to_float;
  }
}

kernels::QuantizeRowFn from_f32_fn(const kernels::KernelTable& k, GgmlType t, const BlockTraits& traits) {
  switch (t) {
    case GgmlType::F16:
      return k.from_f32_f16;
    case GgmlType::BF16:
      return k.from_f32_bf16;
    case GgmlType::Q4_0:
      return k.quantize_row_q4_0;
    case GgmlType::Q4_1:
      return k.quantize_row_q4_1;
    case GgmlType::Q8_0:
      return k.quantize_row_q8_0;
    default:
      return traits.from_float;
  }
}

bool all_finite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// One thread's working rows, kept across calls (qconvert calls once per ~1M-element chunk): the source
// row in f32, the written row dequantized again, and a 4-aligned copy of a misaligned source row.
struct Scratch {
  std::vector<float> x, y;
  std::vector<std::byte> staged;
};

}  // namespace

bool takes_importance(GgmlType out_type) {
  const BlockTraits* t = block_traits(out_type);
  return t != nullptr && t->from_float_weighted != nullptr;
}

RowCodec::RowCodec(GgmlType t) : type(t) {
  const BlockTraits* traits = block_traits(t);
  QE_CHECK(traits != nullptr && traits->from_float != nullptr);
  const kernels::KernelTable& k = kernels::kernels();
  from_f32 = from_f32_fn(k, t, *traits);
  to_f32 = to_f32_fn(k, t, *traits);
  from_f32_weighted = traits->from_float_weighted;
}

void RowCodec::quantize(const float* x, std::byte* out, int64_t n, const float* weights) const {
  if (weights != nullptr && from_f32_weighted != nullptr)
    from_f32_weighted(x, out, n, weights);
  else
    from_f32(x, out, n);
}

double ErrorStats::rmse() const {
  return n == 0 ? 0.0 : std::sqrt(sum_sq / static_cast<double>(n));
}

void convert_rows(GgmlType src_type, const std::byte* src, GgmlType out_type, std::byte* out, int64_t row_len,
                  int64_t r0, int64_t r1, const RowOrder& order, int n_threads, ErrorStats& stats,
                  const std::function<void()>& side_task, std::span<const float> importance) {
  const BlockTraits* in = block_traits(src_type);
  const BlockTraits* to = block_traits(out_type);
  QE_CHECK(in != nullptr && to != nullptr && to->from_float != nullptr);
  QE_CHECK(row_len % ggml_type_info(src_type).block_size == 0 &&
           row_len % ggml_type_info(out_type).block_size == 0);
  const auto src_stride = static_cast<size_t>(ggml_row_bytes(src_type, static_cast<uint64_t>(row_len)));
  const auto out_stride = static_cast<size_t>(ggml_row_bytes(out_type, static_cast<uint64_t>(row_len)));
  const auto n = static_cast<size_t>(row_len);
  // Block structs hold uint16 fields; f32 rows are read as float. Source rows at a misaligned address
  // (possible in a hostile safetensors file) are copied first instead of read in place.
  const bool src_aligned = reinterpret_cast<uintptr_t>(src) % 4 == 0 && src_stride % 4 == 0;
  const kernels::KernelTable& k = kernels::kernels();
  // An f32 source row is its own f32 row: no copy unless it must be staged.
  const kernels::RowToF32Fn src_to_f32 = src_type == GgmlType::F32 ? nullptr : to_f32_fn(k, src_type, *in);
  const RowCodec codec(out_type);
  // ggml's weighted quantizers exist in one (scalar) version; they see the whole row at once, as they must.
  const float* weights = takes_importance(out_type) && !importance.empty() ? importance.data() : nullptr;
  QE_CHECK(weights == nullptr || importance.size() == n);

  std::vector<kernels::RowError> errors(static_cast<size_t>(r1 - r0));  // per row, summed in row order below
  std::vector<uint8_t> unweighted(static_cast<size_t>(r1 - r0));
  const int nt = std::max(1, n_threads);
  const int64_t grab = std::max<int64_t>(1, (r1 - r0) / (16 * nt));  // rows per dynamic grab
#pragma omp parallel num_threads(nt)
  {
    thread_local Scratch scratch;
    Scratch& w = scratch;
    if (w.x.size() < n) w.x.resize(n);
    if (w.y.size() < n) w.y.resize(n);
    if (!src_aligned && w.staged.size() < src_stride) w.staged.resize(src_stride);
    if (side_task) {
#pragma omp single nowait
      side_task();
    }
#pragma omp for schedule(dynamic, grab)
    for (int64_t r = r0; r < r1; ++r) {
      const std::byte* s = src + static_cast<size_t>(order.source_row(r)) * src_stride;
      if (!src_aligned) {
        std::memcpy(w.staged.data(), s, src_stride);
        s = w.staged.data();
      }
      const float* x = reinterpret_cast<const float*>(s);
      if (src_to_f32 != nullptr) {
        src_to_f32(s, w.x.data(), row_len);
        x = w.x.data();
      }
      std::byte* o = out + static_cast<size_t>(r - r0) * out_stride;
      codec.quantize(x, o, row_len, weights);
      codec.to_f32(o, w.y.data(), row_len);
      if (weights != nullptr && !all_finite(w.y.data(), row_len) && all_finite(x, row_len)) {
        codec.quantize(x, o, row_len, nullptr);
        codec.to_f32(o, w.y.data(), row_len);
        unweighted[static_cast<size_t>(r - r0)] = 1;
      }
      errors[static_cast<size_t>(r - r0)] = k.error_stats(x, w.y.data(), row_len);
    }
  }
  for (uint8_t u : unweighted) stats.unweighted_rows += u;
  for (const kernels::RowError& e : errors) {
    stats.sum_sq += e.sum_sq;
    stats.max_abs = std::max(stats.max_abs, static_cast<double>(e.max_abs));
    stats.n += n;
  }
}

}  // namespace qe::convert
