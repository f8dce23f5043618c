#include "model/weights.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "formats/mapped_file.h"
#include "kernels/interleaved.h"

namespace qe::model {
namespace {

std::string shape_str(const std::vector<uint64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return out + "]";
}

Result<const GgufTensorInfo*> find_shaped(const GgufFile& f, const std::string& name,
                                          std::vector<uint64_t> expected) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) return Error{f.name(), "tensor " + name, "missing"};
  if (t->dims != expected)
    return Error{f.name(), "tensor " + name,
                 fmt::format("shape {} does not match the config (expected {})", shape_str(t->dims), shape_str(expected))};
  // Block structs hold fp16 fields and f32 rows are read as float: 4-byte alignment covers both.
  if (reinterpret_cast<uintptr_t>(t->data.data()) % 4 != 0)
    return Error{f.name(), "tensor " + name, fmt::format("data at file offset {} is not 4-byte aligned", t->file_offset)};
  return t;
}

Result<const float*> norm_vector(const GgufFile& f, const std::string& name, int64_t n) {
  auto t = find_shaped(f, name, {static_cast<uint64_t>(n)});
  if (!t) return t.error();
  if ((*t)->type != GgmlType::F32)
    return Error{f.name(), "tensor " + name,
                 fmt::format("type {} is not supported for a norm vector (f32 expected)", ggml_type_name((*t)->type))};
  return reinterpret_cast<const float*>((*t)->data.data());
}

Result<WeightView> matrix(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols) {
  auto t = find_shaped(f, name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)});
  if (!t) return t.error();
  const GgufTensorInfo& info = **t;
  if (!kernels::activation_type(info.type))
    return Error{f.name(), "tensor " + name,
                 fmt::format("type {} is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, "
                             "q5_K, q6_K, iq4_nl, iq4_xs are)",
                             ggml_type_name(info.type))};
  WeightView w;
  w.type = info.type;
  w.rows = rows;
  w.cols = cols;
  w.data = info.data.data();
  w.row_stride = static_cast<int64_t>(ggml_row_bytes(info.type, static_cast<uint64_t>(cols)));
  return w;
}

// Moves every interleavable matrix into one x16 buffer (64-byte aligned slices), releasing the file
// pages of each source tensor right after its copy; then copies the norm vectors there too. A norm
// vector sits between two layers' matrices, and reading it from the map faults in its whole page-cache
// folio (64 KiB to 2 MiB where the file system keeps large folios, e.g. ext4 on Linux 6.18), which maps
// released pages of its neighbours back: a 1.1B q4_0's file pages grew from 10 to 57 MB over 548 tokens.
constexpr int64_t kSliceBytes = int64_t{8} << 20;

Status interleave_all(const GgufFile& f, Weights& w, int n_threads, bool f16_as_bf16) {
  std::vector<WeightView*> views;
  for (LayerWeights& l : w.layers)
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) views.push_back(v);
  // A tied embedding is the output matrix too: in x16 the output matmul runs at the speed of the others
  // (it is a third of a 135M model's bytes); its lookups read rows back with x16_plain_row.
  const bool tied = w.output.data == w.token_embd.data;
  views.push_back(tied ? &w.token_embd : &w.output);
  std::erase_if(views, [](const WeightView* v) { return !kernels::can_interleave(*v); });
  if (views.empty()) return {};
  // Copied as they are: the norm vectors. rope_freqs (a few hundred bytes, read once, when a context is
  // created) stays in the map, as does an untied token_embd: its lookups touch only the rows (and folios)
  // of the tokens seen, where a copy would hold all of it (a 1.1B f16's 131 MB).
  std::vector<const float**> norms{&w.output_norm};
  for (LayerWeights& l : w.layers) norms.insert(norms.end(), {&l.attn_norm, &l.ffn_norm});
  const int64_t norm_bytes = w.token_embd.cols * static_cast<int64_t>(sizeof(float));

  auto slice = [](int64_t bytes) { return (bytes + 63) & ~int64_t{63}; };
  int64_t total = static_cast<int64_t>(norms.size()) * slice(norm_bytes);
  for (const WeightView* v : views) total += slice(v->rows * v->row_stride);
  auto raw = allocate_streamed(static_cast<size_t>(total), f.name(), "interleaved weights");
  if (!raw) return raw.error();
  uint8_t* base = raw->get();  // 2 MiB aligned
  std::vector<std::span<const std::byte>> copied;  // the source tensors, released again at the end
  for (WeightView* v : views) {
    // In slices of whole 16-row groups (each group's x16 bytes sit where its plain rows would), each
    // slice's file pages released after its copy: a large tensor is never held twice while it is
    // copied (the 1.1B's output matrix is 54 MB).
    const int64_t group_bytes = kernels::kInterleave * v->row_stride;
    const int64_t slice_rows = std::max<int64_t>(1, kSliceBytes / group_bytes) * kernels::kInterleave;
    WeightView packed_all;
    for (int64_t r0 = 0; r0 < v->rows; r0 += slice_rows) {
      WeightView part = *v;
      part.rows = std::min(slice_rows, v->rows - r0);
      part.data = static_cast<const uint8_t*>(v->data) + r0 * v->row_stride;
      const auto src = std::span<const std::byte>(static_cast<const std::byte*>(part.data),
                                                  static_cast<size_t>(part.rows * part.row_stride));
      // Never bf16 for the embedding: its lookups would change, not just the output matmul's arithmetic.
      auto packed = kernels::interleave_rows(part, std::span<uint8_t>(base + r0 * v->row_stride, src.size()),
                                             n_threads, f16_as_bf16 && v != &w.token_embd);
      if (!packed) return Error{f.name(), "interleave", packed.error().reason};
      release_mapped_pages(src);
      if (r0 == 0) packed_all = *packed;
    }
    if (packed_all.type != v->type) ++w.f16_as_bf16;
    const int64_t bytes = v->rows * v->row_stride;
    copied.emplace_back(static_cast<const std::byte*>(v->data), static_cast<size_t>(bytes));
    packed_all.rows = v->rows;
    packed_all.data = base;
    *v = packed_all;
    base += slice(bytes);
  }
  for (const float** v : norms) {
    std::memcpy(base, *v, static_cast<size_t>(norm_bytes));
    copied.emplace_back(reinterpret_cast<const std::byte*>(*v), static_cast<size_t>(norm_bytes));
    *v = reinterpret_cast<const float*>(base);
    base += slice(norm_bytes);
  }
  // A read faults in its whole page-cache folio, so the next slice's first read mapped the end of the
  // one released before it back in (163M f16: 35 MB of file pages left mapped after loading).
  for (std::span<const std::byte> src : copied) release_mapped_pages(src);
  if (tied) w.output = w.token_embd;
  w.interleaved = std::move(*raw);
  w.interleaved_bytes = total;
  return {};
}

}  // namespace

Result<Weights> load_weights(const GgufFile& f, const Config& c, bool interleave, int n_threads, bool f16_as_bf16) {
  Weights w;
  auto embd = matrix(f, "token_embd.weight", c.n_vocab, c.dim);
  if (!embd) return embd.error();
  w.token_embd = *embd;
  auto out_norm = norm_vector(f, "output_norm.weight", c.dim);
  if (!out_norm) return out_norm.error();
  w.output_norm = *out_norm;
  if (c.tied_embeddings) {
    w.output = w.token_embd;
  } else {
    auto out = matrix(f, "output.weight", c.n_vocab, c.dim);
    if (!out) return out.error();
    w.output = *out;
  }
  if (c.has_rope_freqs) {
    auto freqs = norm_vector(f, "rope_freqs.weight", c.n_rot / 2);
    if (!freqs) return freqs.error();
    w.rope_freqs = *freqs;
  }

  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("blk.{}.", i);
    struct Vec { const float** dst; const char* name; };
    for (auto [dst, name] : {Vec{&l.attn_norm, "attn_norm.weight"}, Vec{&l.ffn_norm, "ffn_norm.weight"}}) {
      auto v = norm_vector(f, p + name, c.dim);
      if (!v) return v.error();
      *dst = *v;
    }
    struct Mat { WeightView* dst; const char* name; int64_t rows, cols; };
    for (auto [dst, name, rows, cols] : {Mat{&l.wq, "attn_q.weight", c.q_dim(), c.dim},
                                         Mat{&l.wk, "attn_k.weight", c.kv_dim(), c.dim},
                                         Mat{&l.wv, "attn_v.weight", c.kv_dim(), c.dim},
                                         Mat{&l.wo, "attn_output.weight", c.dim, c.q_dim()},
                                         Mat{&l.w_gate, "ffn_gate.weight", c.n_ff, c.dim},
                                         Mat{&l.w_up, "ffn_up.weight", c.n_ff, c.dim},
                                         Mat{&l.w_down, "ffn_down.weight", c.dim, c.n_ff}}) {
      auto m = matrix(f, p + name, rows, cols);
      if (!m) return m.error();
      *dst = *m;
    }
  }
  if (interleave)
    if (Status st = interleave_all(f, w, n_threads, f16_as_bf16); !st) return st.error();
  return w;
}

}  // namespace qe::model
