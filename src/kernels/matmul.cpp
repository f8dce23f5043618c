#include "kernels/matmul.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "kernels/interleaved.h"
#include "kernels/threads.h"

namespace qe::kernels {
namespace {

// Tokens per tile call: 64 q8_0 rows of 4096 are ~280 KB, which stays in a 512 KB-1 MB L2 while every
// 4-row weight strip of the thread's range streams past it once.
constexpr int64_t kTokenChunk = 64;
// Rows per work unit: a multiple of every micro-kernel's row count, so threads never split a tile.
constexpr int64_t kRowGrain = 16;

Error shape_error(const std::string& what) { return Error{"", "matmul", what}; }

}  // namespace

std::optional<GgmlType> activation_type(GgmlType weight) {
  switch (weight) {
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::IQ4_NL:
    case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_XS: return GgmlType::Q8_K;
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return GgmlType::F32;
    default: return std::nullopt;
  }
}

MatmulX16Fn x16_kernel(const KernelTable& k, GgmlType weight) {
  switch (weight) {
    case GgmlType::Q4_0: return k.x16_q4_0_q8_0;
    case GgmlType::Q4_1: return k.x16_q4_1_q8_1;
    case GgmlType::Q8_0: return k.x16_q8_0_q8_0;
    case GgmlType::Q4_K: return k.x16_q4_K_q8_K;
    case GgmlType::Q5_K: return k.x16_q5_K_q8_K;
    case GgmlType::Q6_K: return k.x16_q6_K_q8_K;
    case GgmlType::F16: return k.x16_f16_f32;
    case GgmlType::BF16: return k.x16_bf16_f32;
    default: return nullptr;
  }
}

namespace {

// The scales-and-run split of an x16 int8 weight's kernel (empty for other weights and levels).
X16IntSplit int_split(const KernelTable& k, const WeightView& w) {
  if (w.interleave != kInterleave) return {};
  switch (w.type) {
    case GgmlType::Q4_0: return k.x16_q4_0_split;
    case GgmlType::Q4_1: return k.x16_q4_1_split;
    case GgmlType::Q8_0: return k.x16_q8_0_split;
    default: return {};
  }
}

// Which packed-activation slot an x16 f16 (0) or bf16 (1) weight reads; -1 for other weights.
int float_slot(const WeightView& w) {
  if (w.interleave != kInterleave) return -1;
  return w.type == GgmlType::F16 ? 0 : w.type == GgmlType::BF16 ? 1 : -1;
}

}  // namespace

MatmulTileFn tile_kernel(const KernelTable& k, GgmlType weight) {
  switch (weight) {
    case GgmlType::Q4_0: return k.tile_q4_0_q8_0;
    case GgmlType::Q4_1: return k.tile_q4_1_q8_1;
    case GgmlType::Q8_0: return k.tile_q8_0_q8_0;
    case GgmlType::Q6_K: return k.tile_q6_K_q8_K;
    case GgmlType::Q5_0: return k.tile_q5_0_q8_0;
    case GgmlType::Q5_1: return k.tile_q5_1_q8_1;
    case GgmlType::IQ4_NL: return k.tile_iq4_nl_q8_0;
    case GgmlType::Q2_K: return k.tile_q2_K_q8_K;
    case GgmlType::Q3_K: return k.tile_q3_K_q8_K;
    case GgmlType::Q4_K: return k.tile_q4_K_q8_K;
    case GgmlType::Q5_K: return k.tile_q5_K_q8_K;
    case GgmlType::IQ4_XS: return k.tile_iq4_xs_q8_K;
    case GgmlType::F16: return k.tile_f16_f32;
    case GgmlType::BF16: return k.tile_bf16_f32;
    case GgmlType::F32: return k.tile_f32_f32;
    default: return nullptr;
  }
}

int64_t activation_row_bytes_max(int64_t cols) {
  int64_t bytes = 0;
  if (cols % QK8_0 == 0) bytes = std::max(bytes, q8_0_row_bytes_with_sums(cols));
  if (cols % QK8_1 == 0) bytes = std::max(bytes, static_cast<int64_t>(ggml_row_bytes(GgmlType::Q8_1, static_cast<uint64_t>(cols))));
  if (cols % QK_K == 0) bytes = std::max(bytes, static_cast<int64_t>(ggml_row_bytes(GgmlType::Q8_K, static_cast<uint64_t>(cols))));
  return bytes;
}

Status ActivationBuffer::prepare(GgmlType type, const float* x, int64_t n_tokens, int64_t cols, int64_t x_stride,
                                 int n_threads, const KernelTable& k) {
  return prepare(type, x, n_tokens, cols, x_stride,
                 ThreadTeam::for_this_thread(n_threads > 0 ? n_threads : default_thread_count()), k);
}

Status ActivationBuffer::shape(GgmlType type, int64_t n_tokens, int64_t cols) {
  if (n_tokens < 0 || cols <= 0)
    return shape_error("activation shape " + std::to_string(n_tokens) + " x " + std::to_string(cols));
  if (type != GgmlType::Q8_0 && type != GgmlType::Q8_1 && type != GgmlType::Q8_K)
    return shape_error("no activation quantizer for " + std::string(ggml_type_name(type)));
  const auto info = ggml_type_info(type);
  if (cols % info.block_size != 0)
    return shape_error(std::to_string(cols) + " columns is not a multiple of " +
                       std::to_string(info.block_size) + " (" + std::string(info.name) + ")");
  type_ = type;
  n_tokens_ = n_tokens;
  cols_ = cols;
  // q8_0 rows also carry their block sums for the x16 kernels (kernels/interleaved.h).
  stride_ = type == GgmlType::Q8_0 ? q8_0_row_bytes_with_sums(cols)
                                   : static_cast<int64_t>(ggml_row_bytes(type, static_cast<uint64_t>(cols)));
  storage_.resize(static_cast<size_t>(stride_ * n_tokens));
  data_ = storage_.data();
  return {};
}

void ActivationBuffer::convert(int64_t t, const float* x, const KernelTable& k) {
  uint8_t* row = storage_.data() + t * stride_;
  switch (type_) {
    case GgmlType::Q8_0: {
      k.quantize_q8_0(x, row, cols_);
      const auto* blocks = reinterpret_cast<const BlockQ8_0*>(row);
      auto* sums = reinterpret_cast<int32_t*>(row + q8_0_sums_offset(cols_));
      for (int64_t b = 0; b < cols_ / QK8_0; ++b) {
        int32_t sum = 0;
        for (int i = 0; i < QK8_0; ++i) sum += blocks[b].qs[i];
        sums[b] = sum;
      }
      return;
    }
    case GgmlType::Q8_1:
      return k.quantize_q8_1(x, row, cols_);
    case GgmlType::Q8_K:
      return k.quantize_q8_K(x, row, cols_);
    default:
      QE_CHECK(false);
  }
}

Status ActivationBuffer::prepare(GgmlType type, const float* x, int64_t n_tokens, int64_t cols,
                                 int64_t x_stride, ThreadTeam& team, const KernelTable& k, RowHook before) {
  if (n_tokens < 0 || cols <= 0 || x_stride < cols)
    return shape_error("activation shape " + std::to_string(n_tokens) + " x " + std::to_string(cols));
  // A token row is well under a microsecond to a few: chunks of at least 4 keep the claims rare, one
  // token (a decode step) stays on the caller, and a batched step of 8 sequences splits across two
  // threads (with chunks of 8 the caller quantized all 8 rows while the other thread waited: 8 streams
  // on SmolLM2-135M, 2-core Zen 4, the waiting thread's spin 5.4-6.2% -> 4.0-4.8% of the samples).
  constexpr int64_t kMinChunk = 4;
  if (type == GgmlType::F32) {
    if (before)
      team.run(n_tokens, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) before(t);
      }, kMinChunk);
    type_ = type;
    n_tokens_ = n_tokens;
    cols_ = cols;
    data_ = x;
    stride_ = x_stride * static_cast<int64_t>(sizeof(float));
    return {};
  }
  if (Status st = shape(type, n_tokens, cols); !st) return st;
  team.run(n_tokens, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      if (before) before(t);
      convert(t, x + t * x_stride, k);
    }
  }, kMinChunk);
  return {};
}

namespace {
ThreadTeam& team_of(int n_threads) {
  return ThreadTeam::for_this_thread(n_threads > 0 ? n_threads : default_thread_count());
}
}  // namespace

Status matmul(const WeightView& w, const ActivationBuffer& a, float* y, ThreadTeam& team, const KernelTable& k) {
  const MatmulJob job{w, y, w.rows};
  return matmul_group(std::span<const MatmulJob>(&job, 1), a, team, k);
}

Status matmul(const WeightView& w, const ActivationBuffer& a, float* y, int n_threads, const KernelTable& k) {
  return matmul(w, a, y, team_of(n_threads), k);
}

Status matmul_group(std::span<const MatmulJob> jobs, const ActivationBuffer& a, int n_threads, const KernelTable& k) {
  return matmul_group(jobs, a, team_of(n_threads), k);
}

Status matmul_group(std::span<const MatmulJob> jobs, const ActivationBuffer& a, ThreadTeam& team,
                    const KernelTable& k) {
  // Work units of kRowGrain rows, counted per job so an x16 job's units are whole 16-row groups.
  int64_t units = 0;
  for (const MatmulJob& j : jobs) {
    const auto at = activation_type(j.w.type);
    const bool x16 = j.w.interleave == kInterleave;
    if (!at || (x16 ? !x16_kernel(k, j.w.type) : !tile_kernel(k, j.w.type)))
      return shape_error("no kernel for " + std::string(ggml_type_name(j.w.type)) + (x16 ? " x16" : "") + " weights");
    if (*at != a.type())
      return shape_error(std::string(ggml_type_name(j.w.type)) + " weights need " + std::string(ggml_type_name(*at)) +
                         " activations, got " + std::string(ggml_type_name(a.type())));
    if (j.w.cols != a.cols() || j.w.rows <= 0 || !j.w.data || !j.y || j.ldy < j.w.rows ||
        j.w.row_stride < static_cast<int64_t>(ggml_row_bytes(j.w.type, static_cast<uint64_t>(j.w.cols))))
      return shape_error("weight " + std::to_string(j.w.rows) + " x " + std::to_string(j.w.cols) +
                         " does not fit input with " + std::to_string(a.cols()) + " columns");
    if ((j.w.interleave != 1 && !x16) || (x16 && j.w.rows % kInterleave != 0))
      return shape_error("weight interleave " + std::to_string(j.w.interleave) + " with " + std::to_string(j.w.rows) +
                         " rows");
    units += (j.w.rows + kRowGrain - 1) / kRowGrain;
  }
  if (units == 0 || a.n_tokens() == 0) return {};

  const int64_t n_tokens = a.n_tokens();
  const int64_t cols = a.cols();

  // x16 f16 / bf16 weights over several tokens: their activations are laid out here, once for every
  // thread, where the level splits its kernel (X16FloatSplit), not once per kernel call below. Slot i's
  // region holds chunk t0 (kFloatPackChunk tokens) at word t0 * cols; a run call takes the split's span.
  const X16FloatSplit split[2] = {k.x16_f16_split, k.x16_bf16_split};
  float* packed[2] = {nullptr, nullptr};
  if (n_tokens > 1) {
    int slots[2], n_slots = 0;  // the slots this group's weights read, each once
    for (int i = 0; i < 2; ++i)
      for (const MatmulJob& j : jobs)
        if (float_slot(j.w) == i && split[i]) {
          slots[n_slots++] = i;
          break;
        }
    const int64_t words = n_tokens * cols;
    thread_local std::vector<float> buffer;
    if (static_cast<int64_t>(buffer.size()) < n_slots * words)
      buffer.resize(static_cast<size_t>(n_slots * words));
    for (int s = 0; s < n_slots; ++s) packed[slots[s]] = buffer.data() + words * s;
    const int64_t n_chunks = (n_tokens + kFloatPackChunk - 1) / kFloatPackChunk;
    if (n_slots > 0)
      team.run(n_slots * n_chunks, [&](int64_t u0, int64_t u1, int) {
        for (int64_t u = u0; u < u1; ++u) {
          const int i = slots[u / n_chunks];
          const int64_t t0 = u % n_chunks * kFloatPackChunk;
          split[i].pack(cols, a.row(t0), a.row_stride(), std::min(kFloatPackChunk, n_tokens - t0),
                        packed[i] + t0 * cols);
        }
      });
  }

  // x16 q4_0 / q4_1 / q8_0 weights over several tokens: the activations' per-block scalars, laid out by
  // each thread before its first chunk, once per call (not by every kernel call; a batched decode step's
  // tokens take well under a microsecond). The caller used to make them alone before the job started,
  // reading rows the other core had just converted while that core waited: made by every thread at once,
  // an 8-stream decode step (SmolLM2-135M q4_1, 2-vCPU Xeon) takes 0.5-1.1% less time. A group may need
  // up to three layouts (q4_0 and q8_0 read the same q8_0 rows differently), each made once.
  struct IntScales {
    decltype(X16IntSplit::scales) layout = nullptr;  // the split's scales function names its layout
    int64_t at = 0;                                  // its first line in a thread's buffer
  };
  std::array<IntScales, 3> int_scales{};
  int n_layouts = 0;
  int64_t lines = 0;
  auto layout_of = [&](const X16IntSplit& sp) -> const IntScales* {
    for (const IntScales& is : std::span(int_scales.data(), static_cast<size_t>(n_layouts)))
      if (is.layout == sp.scales) return &is;
    return nullptr;
  };
  if (n_tokens > 1) {
    for (const MatmulJob& j : jobs) {
      const X16IntSplit sp = int_split(k, j.w);
      if (!sp || layout_of(sp)) continue;
      int_scales[n_layouts++] = {sp.scales, lines};
      lines += (sp.scale_bytes(cols, n_tokens) + 63) / 64;
    }
  }
  // The call's number: a thread's buffer holds this call's scales once its number is the thread's.
  static std::atomic<uint64_t> calls{0};
  const uint64_t call = lines > 0 ? calls.fetch_add(1, std::memory_order_relaxed) + 1 : 0;
  auto scales_base = [&]() -> const uint8_t* {
    struct alignas(64) Line {
      uint8_t bytes[64];
    };
    thread_local std::vector<Line> buffer;
    thread_local uint64_t made_for = 0;
    if (made_for != call) {
      if (static_cast<int64_t>(buffer.size()) < lines) buffer.resize(static_cast<size_t>(lines));
      for (const IntScales& is : std::span(int_scales.data(), static_cast<size_t>(n_layouts)))
        is.layout(cols, a.row(0), a.row_stride(), n_tokens, buffer.data() + is.at);
      made_for = call;
    }
    return reinterpret_cast<const uint8_t*>(buffer.data());
  };
  // Units [u_lo, u_hi) of the concatenated jobs, walked job by job; within a job, for each chunk of
  // tokens that stays in L2, its rows stream past once.
  auto work = [&](int64_t u_lo, int64_t u_hi, int) {
    const uint8_t* scale_lines = lines > 0 ? scales_base() : nullptr;
    int64_t base = 0;  // first unit of the current job
    for (const MatmulJob& j : jobs) {
      const int64_t ju = (j.w.rows + kRowGrain - 1) / kRowGrain;
      const int64_t r0 = std::max<int64_t>(u_lo - base, 0) * kRowGrain;
      const int64_t r1 = std::min<int64_t>(std::min<int64_t>(u_hi - base, ju) * kRowGrain, j.w.rows);
      base += ju;
      if (r0 >= r1) continue;
      const auto* wrow = static_cast<const uint8_t*>(j.w.data) + r0 * j.w.row_stride;
      if (j.w.interleave == kInterleave) {
        const MatmulX16Fn fn = x16_kernel(k, j.w.type);
        const int slot = float_slot(j.w);
        const X16IntSplit isp = int_split(k, j.w);
        const IntScales* made = isp ? layout_of(isp) : nullptr;
        const uint8_t* scales = made ? scale_lines + made->at * 64 : nullptr;
        if (slot >= 0 && packed[slot]) {
          for (int64_t t0 = 0; t0 < n_tokens; t0 += split[slot].span)
            split[slot].run(cols, wrow, (r1 - r0) / kInterleave, packed[slot] + t0 * cols,
                            std::min(split[slot].span, n_tokens - t0), j.y + t0 * j.ldy + r0, j.ldy);
          continue;
        }
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenChunk) {
          const int64_t nc = std::min(kTokenChunk, n_tokens - t0);
          if (scales)
            isp.run(cols, wrow, (r1 - r0) / kInterleave, a.row(t0), a.row_stride(), nc,
                    scales + isp.scale_bytes(cols, t0), j.y + t0 * j.ldy + r0, j.ldy);
          else
            fn(cols, wrow, (r1 - r0) / kInterleave, a.row(t0), a.row_stride(), nc, j.y + t0 * j.ldy + r0,
               j.ldy);
        }
      } else {
        const MatmulTileFn fn = tile_kernel(k, j.w.type);
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenChunk) {
          const int64_t nc = std::min(kTokenChunk, n_tokens - t0);
          fn(j.w.cols, wrow, j.w.row_stride, r1 - r0, a.row(t0), a.row_stride(), nc, j.y + t0 * j.ldy + r0, j.ldy);
        }
      }
    }
  };
  // A thread's chunks are a quarter of its range's rest (kernels/thread_team.h) down to this floor, which
  // bounds how far apart the threads end. One token (a decode step): one unit (16 rows, 18 KB of a
  // q4_0 matrix of 2048 columns), since its chunks follow each other in memory; with 4 units the
  // threads ended up to a 5632-column down projection's 200 KB apart. A batch: up to 8 units (128
  // rows) while that still leaves 8 chunks a thread, since every chunk is a kernel call (the int8
  // kernels' scale lines are made once per matmul, above; a floor of up to 16 units measured no
  // faster on an 8-token step).
  const int64_t min_chunk = n_tokens == 1 ? 1 : std::clamp<int64_t>(units / (8 * int64_t{team.size()}), 1, 8);
  team.run(units, work, min_chunk);
  return {};
}

}  // namespace qe::kernels
