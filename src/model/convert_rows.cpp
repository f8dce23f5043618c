#include "model/convert_rows.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/blocks.h"
#include "formats/error.h"

namespace qe::model {

double ErrorStats::rmse() const { return n == 0 ? 0.0 : std::sqrt(sum_sq / static_cast<double>(n)); }

void ErrorStats::merge(const ErrorStats& o) {
  sum_sq += o.sum_sq;
  max_abs = std::max(max_abs, o.max_abs);
  n += o.n;
}

void convert_rows(GgmlType src_type, const std::byte* src, GgmlType out_type, std::byte* out, int64_t row_len,
                  int64_t r0, int64_t r1, const RowOrder& order, int n_threads, ErrorStats& stats) {
  const BlockTraits* in = block_traits(src_type);
  const BlockTraits* to = block_traits(out_type);
  QE_CHECK(in != nullptr && to != nullptr && to->from_float != nullptr);
  QE_CHECK(row_len % ggml_type_info(src_type).block_size == 0 && row_len % ggml_type_info(out_type).block_size == 0);
  const auto src_stride = static_cast<size_t>(ggml_row_bytes(src_type, static_cast<uint64_t>(row_len)));
  const auto out_stride = static_cast<size_t>(ggml_row_bytes(out_type, static_cast<uint64_t>(row_len)));
  const auto n = static_cast<size_t>(row_len);
  // Block structs hold uint16 fields; f32 rows are read as float. Source rows at a misaligned address
  // (possible in a hostile safetensors file) are copied first instead of read in place.
  const bool src_aligned = reinterpret_cast<uintptr_t>(src) % 4 == 0 && src_stride % 4 == 0;

  ErrorStats total;
#pragma omp parallel num_threads(std::max(1, n_threads))
  {
    std::vector<float> x(n), y(n);
    std::vector<std::byte> staged(src_aligned ? 0 : src_stride + 4);
    ErrorStats local;
#pragma omp for schedule(static)
    for (int64_t r = r0; r < r1; ++r) {
      const std::byte* s = src + static_cast<size_t>(order.source_row(r)) * src_stride;
      if (!src_aligned) {
        std::memcpy(staged.data(), s, src_stride);
        s = staged.data();
      }
      in->to_float(s, x.data(), row_len);
      std::byte* o = out + static_cast<size_t>(r - r0) * out_stride;
      to->from_float(x.data(), o, row_len);
      to->to_float(o, y.data(), row_len);
      double sum_sq = 0.0;
      float max_abs = 0.0f;
      for (size_t i = 0; i < n; ++i) {
        const float e = y[i] - x[i];
        sum_sq += static_cast<double>(e) * e;
        max_abs = std::max(max_abs, std::fabs(e));
      }
      local.sum_sq += sum_sq;
      local.max_abs = std::max(local.max_abs, static_cast<double>(max_abs));
      local.n += n;
    }
#pragma omp critical
    total.merge(local);
  }
  stats.merge(total);
}

}  // namespace qe::model
