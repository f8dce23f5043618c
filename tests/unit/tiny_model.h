// Tiny llama models for tests, written with GgufWriter: f32 weights from a fixed seed (portable: raw
// mt19937 draws, no std distributions), GPT-2's 256 byte tokens (token i is byte i), so texts are their
// bytes and no tokenizer data is needed.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "formats/blocks.h"
#include "formats/gguf_writer.h"
#include "model/model.h"

namespace qe::testing {

constexpr uint32_t kSeed = 20250101;

struct TinySpec {
  int64_t dim = 64, n_layers = 2, n_heads = 4, n_kv_heads = 2, n_ff = 96, n_vocab = 256, n_ctx = 256;
  uint32_t eos = 2;
  bool add_eos = false;
  std::string chat_template;  // "" = none
  // The layer matrices and output.weight: f32, or any type with a block quantizer (f16, q4_1, ...: the
  // loader interleaves the x16 ones).
  GgmlType matrix_type = GgmlType::F32;
};

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + n, as UTF-8.
inline std::vector<std::string> gpt2_byte_tokens() {
  std::vector<std::string> out;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : 256 + extra++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    out.push_back(s);
  }
  return out;
}

inline void write_tiny_model(const std::string& path, const TinySpec& s) {
  std::mt19937 rng(kSeed);
  // Uniform in [-1, 1) * sqrt(3) * std: standard deviation `std`, the same on every standard library.
  auto uniform = [&](float std) {
    return (static_cast<float>(rng()) * 0x1p-32f * 2.0f - 1.0f) * std::sqrt(3.0f) * std;
  };
  const int64_t head_dim = s.dim / s.n_heads;
  GgufWriter w;
  auto set = [&](const char* key, GgufValue v) { ASSERT_TRUE(w.set(key, std::move(v)).ok()) << key; };
  set("general.architecture", GgufValue::str("llama"));
  set("general.name", GgufValue::str("tiny"));
  set("llama.context_length", GgufValue::u32(static_cast<uint32_t>(s.n_ctx)));
  set("llama.embedding_length", GgufValue::u32(static_cast<uint32_t>(s.dim)));
  set("llama.block_count", GgufValue::u32(static_cast<uint32_t>(s.n_layers)));
  set("llama.feed_forward_length", GgufValue::u32(static_cast<uint32_t>(s.n_ff)));
  set("llama.attention.head_count", GgufValue::u32(static_cast<uint32_t>(s.n_heads)));
  set("llama.attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(s.n_kv_heads)));
  set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f));
  set("llama.rope.freq_base", GgufValue::f32(10000.0f));
  set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(head_dim)));
  set("llama.vocab_size", GgufValue::u32(static_cast<uint32_t>(s.n_vocab)));
  set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  set("tokenizer.ggml.pre", GgufValue::str("default"));
  set("tokenizer.ggml.tokens", GgufValue::array(gpt2_byte_tokens()));
  set("tokenizer.ggml.token_type", GgufValue::array(std::vector<int32_t>(256, 1)));
  set("tokenizer.ggml.merges", GgufValue::array(std::vector<std::string>{"a b"}));
  set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  set("tokenizer.ggml.eos_token_id", GgufValue::u32(s.eos));
  set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
  set("tokenizer.ggml.add_eos_token", GgufValue::boolean(s.add_eos));
  if (!s.chat_template.empty()) set("tokenizer.chat_template", GgufValue::str(s.chat_template));

  // Name, rows, cols (cols = 0: a norm vector), standard deviation (0: a norm, 1 + small noise).
  struct T {
    std::string name;
    int64_t rows, cols;
    float std;
  };
  std::vector<T> ts = {{"token_embd.weight", s.n_vocab, s.dim, 1.0f},
                       {"output_norm.weight", s.dim, 0, 0},
                       // Untied, 1/sqrt(dim): logits O(1), as a plausible model's.
                       {"output.weight", s.n_vocab, s.dim, 1.0f / std::sqrt(static_cast<float>(s.dim))}};
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    auto m = [&](const char* n, int64_t rows, int64_t cols) {
      ts.push_back({p + n, rows, cols, 1.0f / std::sqrt(static_cast<float>(cols))});
    };
    ts.push_back({p + "attn_norm.weight", s.dim, 0, 0});
    m("attn_q.weight", s.n_heads * head_dim, s.dim);
    m("attn_k.weight", s.n_kv_heads * head_dim, s.dim);
    m("attn_v.weight", s.n_kv_heads * head_dim, s.dim);
    m("attn_output.weight", s.dim, s.n_heads * head_dim);
    ts.push_back({p + "ffn_norm.weight", s.dim, 0, 0});
    m("ffn_gate.weight", s.n_ff, s.dim);
    m("ffn_up.weight", s.n_ff, s.dim);
    m("ffn_down.weight", s.dim, s.n_ff);
  }
  auto type_of = [&](const T& t) {
    return t.cols != 0 && t.name != "token_embd.weight" ? s.matrix_type : GgmlType::F32;
  };
  for (const T& t : ts) {
    std::vector<uint64_t> dims =
        t.cols == 0 ? std::vector<uint64_t>{static_cast<uint64_t>(t.rows)}
                    : std::vector<uint64_t>{static_cast<uint64_t>(t.cols), static_cast<uint64_t>(t.rows)};
    ASSERT_TRUE(w.add_tensor(t.name, type_of(t), dims).ok()) << t.name;
  }
  ASSERT_TRUE(w.open(path, /*overwrite=*/true).ok());
  for (const T& t : ts) {
    std::vector<float> x(static_cast<size_t>(t.rows * std::max<int64_t>(t.cols, 1)));
    for (float& v : x) v = t.cols == 0 ? 1.0f + uniform(0.2f) : uniform(t.std);
    const GgmlType type = type_of(t);
    if (type == GgmlType::F32) {
      ASSERT_TRUE(w.write_tensor(t.name, std::as_bytes(std::span<const float>(x))).ok()) << t.name;
      continue;
    }
    const BlockTraits* traits = block_traits(type);
    ASSERT_TRUE(traits && traits->from_float) << ggml_type_name(type);
    const auto row_bytes = static_cast<size_t>(ggml_row_bytes(type, static_cast<uint64_t>(t.cols)));
    std::vector<uint8_t> q(row_bytes * static_cast<size_t>(t.rows));
    for (int64_t r = 0; r < t.rows; ++r) traits->from_float(&x[r * t.cols], q.data() + r * row_bytes, t.cols);
    ASSERT_TRUE(w.write_tensor(t.name, std::as_bytes(std::span<const uint8_t>(q))).ok()) << t.name;
  }
  ASSERT_TRUE(w.finish().ok());
}

// A tiny model written to QE_TEST_TMPDIR (the file name made of `name` and the process id), opened
// (one thread unless the options say otherwise) and its file removed: the mapping stays valid. nullptr,
// with a test failure, when it does not open.
inline std::unique_ptr<model::Model> open_tiny_model(const std::string& name, const TinySpec& spec,
                                                     model::ModelOptions options = {}) {
  const std::string path =
      std::string(QE_TEST_TMPDIR) + "/" + name + "_" + std::to_string(::getpid()) + ".gguf";
  write_tiny_model(path, spec);
  if (options.n_threads == 0) options.n_threads = 1;
  Result<std::unique_ptr<model::Model>> m = model::open_model(path, options);
  ::unlink(path.c_str());
  EXPECT_TRUE(m.ok()) << m.error().message();
  return m.ok() ? std::move(*m) : nullptr;
}

// A text as the tiny models' token ids (token i is byte i).
inline std::vector<int32_t> byte_ids(std::string_view text) {
  std::vector<int32_t> ids;
  for (unsigned char ch : text) ids.push_back(ch);
  return ids;
}

}  // namespace qe::testing
