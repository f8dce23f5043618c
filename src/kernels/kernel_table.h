// The dispatch tables: one set of function pointers per (ISA level, numerics), each over whole rows or
// tiles so the indirect call is paid once per row/tile, never per block. Every level fills every entry
// its numerics cover (lower-level kernels fill gaps), so callers of a covered entry never test for
// nullptr.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "formats/error.h"
#include "kernels/cpu_features.h"

namespace qe::kernels {

// f32 row of n elements -> activation blocks (q8_0, q8_1 or q8_K); n is a multiple of the block size.
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n);

// Tile product: y[c * ldy + r] = dot(W row r, A row c) for r < nr, c < nc, each row n elements long.
// W rows are w_stride bytes apart, A rows (one per token) a_stride bytes apart. The result of each
// (r, c) does not depend on nr, nc or the tile position, so GEMM equals GEMV column by column and any
// split over threads gives identical bits. One exception, in llama.cpp tables only: q4_K follows
// llama.cpp's repacked q4_K_8x8, whose GEMM (the first nc - nc % 4 tokens of a call) rounds per pair of
// sub-blocks and whose GEMV (the rest) per super-block; the matmul driver's 64-token chunks keep the
// split where llama.cpp has it.
using MatmulTileFn = void (*)(int64_t n, const void* w, int64_t w_stride, int64_t nr, const void* a,
                              int64_t a_stride, int64_t nc, float* y, int64_t ldy);

// x16 product (kernels/interleaved.h): y[c * ldy + 16 * g + r] = dot(row r of group g, A row c) for
// g < n_groups, r < 16, c < nc. Groups are contiguous (16 row-lengths of blocks each). A rows are q8_0
// rows with their block sums (q8_0_row_bytes_with_sums) or q8_1 rows, a_stride bytes apart.
using MatmulX16Fn = void (*)(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t a_stride,
                             int64_t nc, float* y, int64_t ldy);

// An x16 f16 / bf16 product over several tokens in two steps, so that a matmul lays out its activations
// once for all its threads instead of once per call (repacking 64 tokens per call took 22% of a 2-thread
// f16 GEMM on Zen 4). pack writes A rows [0, nc) (a_stride bytes apart) into `panels`, at most nc * n
// 4-byte words in the level's own layout; run is then the level's MatmulX16Fn on them, bit for bit:
// y[c * ldy + 16 * g + r] for g < n_groups, r < 16, c < nc. The layout of nc tokens is that of their
// 64-token chunks one after another (kernels/interleaved.h: for_each_chunk_panel), so pack may run
// chunk by chunk; span: the most tokens (a multiple of 64) a matmul gives one run call.
struct X16FloatSplit {
  void (*pack)(int64_t n, const void* a, int64_t a_stride, int64_t nc, void* panels) = nullptr;
  void (*run)(int64_t n, const void* w, int64_t n_groups, const void* panels, int64_t nc, float* y,
              int64_t ldy) = nullptr;
  int64_t span = 64;
  explicit operator bool() const { return pack && run; }
};

// An x16 q4_0 / q4_1 / q8_0 product over several tokens in two steps, so that a matmul lays out its
// activations' per-block scalars (d as float, the block sum's start or s) once instead of once per
// kernel call (per call they took ~3% of an 8-token batched decode step: SmolLM2-135M q4_1, Zen 4).
// scales writes those of A rows [0, nc) (a_stride bytes apart) to `out` (64-byte aligned,
// scale_bytes(n, nc) bytes, in the level's own layout); run is then the level's MatmulX16Fn on the same
// rows with them, bit for bit. For nc a multiple of 64, out + scale_bytes(n, nc) is where the scales
// of the rows from nc on begin.
struct X16IntSplit {
  int64_t (*scale_bytes)(int64_t n, int64_t nc) = nullptr;
  void (*scales)(int64_t n, const void* a, int64_t a_stride, int64_t nc, void* out) = nullptr;
  void (*run)(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t a_stride, int64_t nc,
              const void* scales, float* y, int64_t ldy) = nullptr;
  explicit operator bool() const { return scale_bytes && scales && run; }
};

// Row of n elements of a stored type (f16, bf16, q4_0, ...) -> f32; n a multiple of the block size.
using RowToF32Fn = void (*)(const void* x, float* y, int64_t n);

// Error of a written row against its source: sum over i of (out[i] - src[i])^2, each difference rounded
// to float and squared in double; max |out[i] - src[i]| with NaN differences skipped.
struct RowError {
  double sum_sq = 0.0;
  float max_abs = 0.0f;
};
using RowErrorFn = RowError (*)(const float* src, const float* out, int64_t n);

// f16 x f16 dot of n real elements; [n, n_pad) count as zeros (ggml's padded KV cache), which changes
// the lanes (and so the bits) of some of llama.cpp's dots.
using F16DotFn = float (*)(int64_t n, int64_t n_pad, const uint16_t* a, const uint16_t* b);

// Flash attention (fast numerics). Keys come in blocks of kAttnBlock at absolute positions; the query
// and output rows are padded to a multiple of kAttnPad floats (zeros), whole vectors at any level.
constexpr int64_t kAttnBlock = 64;
constexpr int64_t kAttnPad = 16;

// One key block of online-softmax attention for n_rows query rows, read from the cache as it lies (f16
// or f32 elements S; widening is exact, so an f16 cache gives the bits of its values held in f32).
// q: (n_rows, ld) f32, already scaled by 1/sqrt(d), zero past d; kt: the block's keys transposed, d
// feature rows of kAttnBlock keys, ks elements apart; v: its values, one row of d features per key, vs
// elements apart. Row r sees the block's first nv[r] keys (1 <= nv[r] <= kAttnBlock) and updates its
// state (m: running max of the scores, l: running sum of exp(score - m), o: (n_rows, ld) running sum of
// exp(score - m) v, features d..ld never touched):
//   s_k = q_r . kt[:, k],  m' = max(m, max_k s_k),  a = exp(m - m'),  p_k = exp(s_k - m')
//   l = l a + sum_k p_k,   o = o a + sum_k p_k v_k,  m = m'        (k < nv[r]; start m = -inf, l = o = 0)
// A row's bits depend only on its own q, state and keys k < nv[r]: not on n_rows, the other rows or its
// place in the call, and never on kt columns past nv[r] (they may hold anything, NaN included). Nothing
// is read of v past a row's last key or past feature d.
// `next` (or nullptr) names the block the caller will pass next, with the same ks and vs, for the kernel
// to request while it computes this one: a hint, never read, that changes no bit.
struct AttnBlockRef {  // a key block of the cache
  const void* kt = nullptr;  // its K^T tile
  const void* v = nullptr;   // its values
  int64_t n_keys = 0;        // the keys its rows see (the largest nv)
};
using AttnBlockFn = void (*)(int64_t n_rows, int64_t d, int64_t ld, const float* q, const void* kt, int64_t ks,
                             const void* v, int64_t vs, const int32_t* nv, float* m, float* l, float* o,
                             const AttnBlockRef* next);

// Whose numerics a table computes. fast: this engine's kernels (x16 layouts, its own summation orders).
// llamacpp: the bits llama.cpp's CPU backend computes when built for AVX2 (ggml-cpu's x86 quantize_row /
// vec_dot, tinyBLAS, its repacked q4_0 GEMV/GEMM, ggml_v_expf, its RoPE, softmax and rms_norm),
// reproduced operation for operation (kernels/llamacpp_<isa>.cpp) so that the forward pass gives
// llama.cpp's logits and greedy tokens exactly. Every level computes the same llama.cpp bits (the
// scalar reference emulates the vector lanes; AVX-512 keeps AVX2's).
enum class Numerics { fast, llamacpp };

// A llama.cpp table leaves empty what llama.cpp's numerics do not cover (bf16 and f32 weights, the x16
// layouts), so the matmul drivers report "no kernel" for them; a fast table
// leaves only the f16 attention dots empty (fast attention reads the cache through the tiles).
struct KernelTable {
  Isa isa = Isa::ref;
  Numerics numerics = Numerics::fast;

  // Activation quantizers. llama.cpp: its x86 quantize_row_q8_0 / q8_1 (id = 127 / amax, round half to
  // even, q8_1's s = fp16(d * sum(q))).
  QuantizeRowFn quantize_q8_0 = nullptr;
  QuantizeRowFn quantize_q8_1 = nullptr;
  QuantizeRowFn quantize_q8_K = nullptr;

  // llama.cpp: ggml_vec_dot_q4_1_q8_1; ggml_vec_dot_q8_0_q8_0 (= tinyBLAS_Q0_AVX per (row, token)); q4_0
  // as its repacked q4_0_8x8 GEMV/GEMM (weights with rows % 8 == 0); f16 with the activations rounded
  // to f16 first (ggml converts them to vec_dot_type), by tinyBLAS<8> in a batch table and by
  // ggml_vec_dot_f16 in the single-token table, as llama.cpp chooses.
  MatmulTileFn tile_q4_0_q8_0 = nullptr;
  MatmulTileFn tile_q4_1_q8_1 = nullptr;
  MatmulTileFn tile_q8_0_q8_0 = nullptr;
  MatmulTileFn tile_q6_K_q8_K = nullptr;
  MatmulTileFn tile_q5_0_q8_0 = nullptr;
  MatmulTileFn tile_q5_1_q8_1 = nullptr;
  MatmulTileFn tile_iq4_nl_q8_0 = nullptr;
  MatmulTileFn tile_q2_K_q8_K = nullptr;
  MatmulTileFn tile_q3_K_q8_K = nullptr;
  MatmulTileFn tile_q4_K_q8_K = nullptr;
  MatmulTileFn tile_q5_K_q8_K = nullptr;
  MatmulTileFn tile_iq4_xs_q8_K = nullptr;
  MatmulTileFn tile_f16_f32 = nullptr;   // W f16, A f32
  MatmulTileFn tile_bf16_f32 = nullptr;  // W bf16, A f32
  MatmulTileFn tile_f32_f32 = nullptr;

  MatmulX16Fn x16_q4_0_q8_0 = nullptr;
  MatmulX16Fn x16_q4_1_q8_1 = nullptr;
  MatmulX16Fn x16_q8_0_q8_0 = nullptr;
  // The same three split in scales and run (empty where a level has no split).
  X16IntSplit x16_q4_0_split;
  X16IntSplit x16_q4_1_split;
  X16IntSplit x16_q8_0_split;
  // k-quants in the x16 layout, against q8_K activation rows (which carry their own bsums).
  MatmulX16Fn x16_q4_K_q8_K = nullptr;
  MatmulX16Fn x16_q5_K_q8_K = nullptr;
  MatmulX16Fn x16_q6_K_q8_K = nullptr;
  // f16 / bf16 in their x16 layouts, against f32 activation rows (contracts in interleaved.h: exact
  // widened weights and f32 FMAs; bf16 by vdpbf16ps rounds the activations to bf16, see bf16_dot).
  MatmulX16Fn x16_f16_f32 = nullptr;
  MatmulX16Fn x16_bf16_f32 = nullptr;
  // The bf16 entries take vdpbf16ps (AVX-512 on a CPU where it pays, kernel_tables.h: bf16_dot_pays):
  // describe_isa() says so, as it changes the numbers.
  bool bf16_dot = false;
  // The same products split in pack and run (empty where a level has no split: then matmul calls the
  // kernels above).
  X16FloatSplit x16_f16_split;
  X16FloatSplit x16_bf16_split;

  // llama.cpp's attention products on the f16 cache (llama.cpp tables only). dot_f16: the path of this
  // table's batch size (tinyBLAS<8>, one 8-lane accumulator, in a batch table; ggml_vec_dot_f16 in the
  // single-token table); dot_f16_gemv: ggml_vec_dot_f16 (four 8-lane accumulators, double tail), which
  // llama.cpp also takes in a batch where tinyBLAS refuses the shape.
  F16DotFn dot_f16 = nullptr;
  F16DotFn dot_f16_gemv = nullptr;

  // y = x / sqrt(mean(x^2) + eps) * w; y may alias x. llama.cpp: ggml_compute_forward_rms_norm_f32 then
  // ggml_mul, which is the reference level's order (double sum of float squares, y = (x * scale) * w).
  void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps) = nullptr;
  // In-place llama.cpp "norm" RoPE on n_heads heads of head_dim floats: pairs (2i, 2i+1) for 2i < n_rot
  // are rotated by angle_i (cos[i], sin[i] from rope_cos_sin); the rest pass through. llama.cpp: with
  // ggml's contracted products, x0' = fma(x0, c, -(x1 s)), x1' = fma(x0, s, x1 c).
  void (*rope)(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cos,
               const float* sin) = nullptr;
  // In place: x = softmax(x * scale), max-subtracted; the product x * scale is rounded once, as a
  // separate scale pass would. llama.cpp: ggml_compute_forward_soft_max_f32 with a zero mask (8-lane
  // ggml_v_expf, group sums in double).
  void (*softmax)(float* x, int64_t n, float scale) = nullptr;
  // y = silu(gate) * up; y may alias gate or up. llama.cpp: ggml_vec_swiglu_f32.
  void (*silu_mul)(const float* gate, const float* up, float* y, int64_t n) = nullptr;
  // Exact at every level and in both numerics (one rounding per element).
  void (*add)(const float* a, const float* b, float* y, int64_t n) = nullptr;  // y may alias
  void (*scale)(const float* x, float s, float* y, int64_t n) = nullptr;       // y may alias

  // Weight conversion (qconvert): byte-identical to the reference routines in formats/blocks.h on every
  // input (NaN, Inf, -0, subnormals, ties) at every level, so both numerics share them;
  // kernels/convert_<isa>.cpp.
  RowToF32Fn to_f32_f16 = nullptr;
  RowToF32Fn to_f32_bf16 = nullptr;
  RowToF32Fn to_f32_q4_0 = nullptr;
  RowToF32Fn to_f32_q4_1 = nullptr;
  RowToF32Fn to_f32_q8_0 = nullptr;
  QuantizeRowFn quantize_row_q4_0 = nullptr;
  QuantizeRowFn quantize_row_q4_1 = nullptr;
  QuantizeRowFn quantize_row_q8_0 = nullptr;  // weights: same bytes as quantize_q8_0, NaN blocks included
  QuantizeRowFn from_f32_f16 = nullptr;
  QuantizeRowFn from_f32_bf16 = nullptr;
  RowErrorFn error_stats = nullptr;  // sum order differs by level (sum_sq within n * DBL_EPSILON)

  // attention (fast numerics only; model/attention.cpp, kernels/attention_<isa>.cpp): flash-style
  // blocks of kAttnBlock keys over the f16 / f32 cache.
  AttnBlockFn attn_block_f16 = nullptr;  // over an f16 cache
  AttnBlockFn attn_block_f32 = nullptr;  // over an f32 cache
};

// The fast table of the active level: the best the CPU has unless select_isa() chose another.
const KernelTable& kernels();
Isa active_isa();

// The active level's table for a numerics and a forward step of n_tokens tokens. llama.cpp takes other
// f16 paths for one token (GEMV) than for a batch, so its numerics have a single-token table (n_tokens
// == 1) and a batch table; the fast numerics have one table for every batch size.
const KernelTable& kernels(Numerics numerics, int64_t n_tokens);

// The fast table of one level (or its table for a numerics and batch size, as kernels() picks them), or
// nullptr when this build lacks the level or the CPU cannot run it (tests, qbench).
const KernelTable* kernel_table(Isa isa);
const KernelTable* kernel_table(Isa isa, Numerics numerics, int64_t n_tokens);

// Selects a level for all later kernels() calls. Not thread-safe against running kernels: call at
// start-up. Error when the name is unknown or the CPU lacks the level. `how` says where the choice came
// from, for describe_isa()'s line.
Status select_isa(Isa isa, std::string_view how = "selected");
Status select_isa(std::string_view name, std::string_view how = "selected");
// Keeps the active level and replaces the "how" of describe_isa()'s line (e.g. why a request was ignored).
void note_isa_choice(std::string_view how);

// One line for the log: "kernels: avx2 (best avx2; cpu: AMD EPYC ...; selected)".
std::string describe_isa();

// RoPE angles for one position, llama.cpp's ggml_rope_cache_init: theta_i = pos * freq_base^(-2i/n_rot)
// by repeated multiplication in float as ggml does (so the angles match bit for bit), then the
// rope_yarn angle with ext_factor 0 (llama, linear scaling): freq_scale * (theta_i / factor_i), mscale 1.
// freq_scale is 1 / rope.scaling.factor; freq_factors are llama3's rope_freqs.weight (nullptr: all 1).
// cos/sin hold n_rot/2 values. kernels/rope_angles.cpp.
void rope_cos_sin(int64_t pos, int64_t n_rot, float freq_base, float freq_scale, const float* freq_factors,
                  float* cos, float* sin);
// Unscaled angles (freq_scale 1, no factors): the same bits, since x * 1 and x / 1 are exact.
inline void rope_cos_sin(int64_t pos, int64_t n_rot, float freq_base, float* cos, float* sin) {
  rope_cos_sin(pos, n_rot, freq_base, 1.0f, nullptr, cos, sin);
}

}  // namespace qe::kernels
