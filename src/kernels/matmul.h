// Matmul drivers the forward pass calls: y[t * ldy + r] = sum_k W[r][k] * x[t][k].
// The input is converted once (ActivationBuffer) into the type the weight's kernel reads, and can feed
// every matmul that reads the same input (q/k/v, gate/up) in one parallel region (matmul_group).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "kernels/kernel_table.h"
#include "kernels/thread_team.h"

namespace qe::kernels {

// Non-owning view of a 2-D weight: rows = output features, cols = input features (ggml ne[1], ne[0]).
struct WeightView {
  GgmlType type = GgmlType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  int64_t row_stride = 0;  // bytes between rows (ggml nb[1]); ggml_row_bytes(type, cols) when dense
  // 1: plain rows. 16: the x16 layout of kernels/interleaved.h (dense; 16-row groups of
  // 16 * row_stride bytes), made by interleave_rows at load time.
  int32_t interleave = 1;
};

// Activation type a weight type's kernel reads (llama.cpp's vec_dot_type): q4_0, q5_0, iq4_nl, q8_0 -> q8_0;
// q4_1, q5_1 -> q8_1; the k-quants and iq4_xs -> q8_K;
// f32, f16, bf16 -> f32. nullopt when no kernel exists for the weight type.
std::optional<GgmlType> activation_type(GgmlType weight);

// Bytes of the largest converted row of `cols` values over the activation types (q8_0 with its block
// sums, q8_1, q8_K) that cols allows.
int64_t activation_row_bytes_max(int64_t cols);

// Work on one token's row of the input just before that row is converted, in the same parallel region
// (a residual add and a norm, an activation): fn(ctx, t) writes row t of x. Rows that would otherwise be
// made by the caller alone, while the other threads wait, are made by whichever thread converts them.
struct RowHook {
  void (*fn)(void* ctx, int64_t t) = nullptr;
  void* ctx = nullptr;

  template <class F>  // f(t), kept by reference: it must outlive the call that takes the hook
  static RowHook of(F& f) {
    return {[](void* c, int64_t t) { (*static_cast<F*>(c))(t); }, &f};
  }
  explicit operator bool() const { return fn != nullptr; }
  void operator()(int64_t t) const { fn(ctx, t); }
};

// n_tokens rows of f32 input, converted once. F32 keeps a pointer to the caller's data (no copy), so
// the caller's buffer must outlive the matmuls.
class ActivationBuffer {
 public:
  // x: n_tokens rows of cols floats, x_stride floats apart. type: q8_0, q8_1, q8_K or f32; cols must be a
  // multiple of its block. Reuses its storage across calls (no allocation once warm). before(t), when
  // set, runs on each row first (see RowHook), also for f32.
  Status prepare(GgmlType type, const float* x, int64_t n_tokens, int64_t cols, int64_t x_stride,
                 ThreadTeam& team, const KernelTable& k = kernels(), RowHook before = {});
  // The same on ThreadTeam::for_this_thread(n_threads) (0: default_thread_count()).
  Status prepare(GgmlType type, const float* x, int64_t n_tokens, int64_t cols, int64_t x_stride,
                 int n_threads = 0, const KernelTable& k = kernels());

  // Storage for n_tokens rows of cols values of `type` (q8_0, q8_1 or q8_K; cols a multiple of its
  // block), for a producer that fills them row by row with convert() (instead of prepare()).
  Status shape(GgmlType type, int64_t n_tokens, int64_t cols);
  // Row t from x (cols floats): the bytes prepare() makes of it. Threads may convert different rows at once.
  void convert(int64_t t, const float* x, const KernelTable& k);

  // Capacity for `bytes` of converted rows (see activation_row_bytes_max): later prepare() calls within
  // it never reallocate. Reserves address space only; pages are touched as rows are written.
  void reserve(int64_t bytes) { storage_.reserve(static_cast<size_t>(bytes)); }

  GgmlType type() const { return type_; }
  int64_t n_tokens() const { return n_tokens_; }
  int64_t cols() const { return cols_; }
  int64_t row_stride() const { return stride_; }  // bytes between tokens
  const void* row(int64_t t) const { return static_cast<const uint8_t*>(data_) + t * stride_; }

 private:
  GgmlType type_ = GgmlType::F32;
  int64_t n_tokens_ = 0, cols_ = 0, stride_ = 0;
  const void* data_ = nullptr;
  std::vector<uint8_t> storage_;
};

// One matmul of a group: output y[t * ldy + r] for t < n_tokens, r < w.rows (ldy = w.rows when dense).
struct MatmulJob {
  WeightView w;
  float* y = nullptr;
  int64_t ldy = 0;
};

// y = W x for every token in a, on a team (or ThreadTeam::for_this_thread(n_threads), n_threads = 0:
// default_thread_count()). Error on a type or shape mismatch. Rows are handed out in chunks; each
// chunk walks the tokens in pieces that stay in L2.
Status matmul(const WeightView& w, const ActivationBuffer& a, float* y, ThreadTeam& team,
              const KernelTable& k = kernels());
Status matmul(const WeightView& w, const ActivationBuffer& a, float* y, int n_threads = 0,
              const KernelTable& k = kernels());

// Several matmuls reading the same input in ONE team job (one wait for q/k/v or gate/up): the rows of
// all jobs are concatenated and handed out as one range.
Status matmul_group(std::span<const MatmulJob> jobs, const ActivationBuffer& a, ThreadTeam& team,
                    const KernelTable& k = kernels());
Status matmul_group(std::span<const MatmulJob> jobs, const ActivationBuffer& a, int n_threads = 0,
                    const KernelTable& k = kernels());

// The tile kernel for a weight type in a table (nullptr when none).
MatmulTileFn tile_kernel(const KernelTable& k, GgmlType weight);
// The x16 kernel for an interleaved weight type (q4_0, q4_1, q8_0, q4_K, q5_K, q6_K, f16, bf16), nullptr for
// others.
MatmulX16Fn x16_kernel(const KernelTable& k, GgmlType weight);

}  // namespace qe::kernels
