// qconvert's building blocks: the RoPE row permutation (against convert_hf_to_gguf.py's reshape/swapaxes,
// written out here as index arithmetic), the type policy (llama-quantize's rules), HF config checks and the
// row converter's error statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "convert/llama_config.h"
#include "convert/rows.h"
#include "convert/types.h"

namespace qe::convert {
namespace {

TEST(ConvertPermute, MatchesReshapeSwapaxes) {
  // w.reshape(heads, 2, hd/2, in).swapaxes(1, 2).reshape(rows, in): new[h][i][j] = old[h][j][i].
  for (int64_t heads : {1, 3}) {
    for (int64_t hd : {2, 8, 64}) {
      RowOrder to_gguf{hd, false}, to_hf{hd, true};
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i)
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t out = h * hd + i * 2 + j, in = h * hd + j * (hd / 2) + i;
            EXPECT_EQ(to_gguf.source_row(out), in);
            EXPECT_EQ(to_hf.source_row(in), out);
          }
    }
  }
  EXPECT_EQ(RowOrder{}.source_row(17), 17);
}

TEST(ConvertTypes, LlamaQuantizePolicy) {
  TypePolicy p{GgmlType::Q4_0, false, {}};
  const std::vector<uint64_t> mat{576, 100}, vec{576}, odd{80, 64};
  const ModelShape has_out{true, 30, 9, 3}, tied{false, 30, 9, 3};
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_norm.weight", vec, has_out).type, GgmlType::F32);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_q.weight", mat, has_out).type, GgmlType::Q4_0);
  // The output projection: q6_K, whose 256-value blocks 576 is not a multiple of: q8_0.
  EXPECT_EQ(choose_tensor_type(p, "output.weight", mat, has_out).type, GgmlType::Q8_0);
  EXPECT_EQ(choose_tensor_type(p, "output.weight", std::vector<uint64_t>{512, 100}, has_out).type, GgmlType::Q6_K);
  EXPECT_EQ(choose_tensor_type(p, "token_embd.weight", mat, has_out).type, GgmlType::Q4_0);
  EXPECT_EQ(choose_tensor_type(p, "token_embd.weight", mat, tied).type, GgmlType::Q8_0);  // tied
  TypeChoice fb = choose_tensor_type(p, "blk.0.ffn_down.weight", odd, has_out);
  EXPECT_EQ(fb.type, GgmlType::F16);
  EXPECT_TRUE(fb.fallback);
  EXPECT_NE(fb.reason.find("row length 80"), std::string::npos);
  p.pure = true;
  EXPECT_EQ(choose_tensor_type(p, "output.weight", mat, has_out).type, GgmlType::Q4_0);
  p.pure = false;
  p.overrides.push_back(*parse_tensor_type_override("attn=bf16"));
  p.overrides.push_back(*parse_tensor_type_override("attn_(q|k)=q8_0"));  // the last match wins
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_k.weight", mat, has_out).type, GgmlType::Q8_0);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_v.weight", mat, has_out).type, GgmlType::BF16);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_norm.weight", vec, has_out).type, GgmlType::F32);
  // The choice records which override decided it; the words are the front end's.
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_k.weight", mat, has_out).override_index, 1u);
  TypeChoice ov = choose_tensor_type(p, "blk.0.attn_v.weight", odd, has_out);
  EXPECT_EQ(ov.override_index, 0u);
  EXPECT_EQ(ov.type, GgmlType::BF16);  // bf16 has no blocks: no fallback
  EXPECT_TRUE(ov.reason.empty());
  EXPECT_FALSE(choose_tensor_type(p, "output.weight", mat, has_out).override_index);
  EXPECT_EQ(tensor_type_override_spec(p.overrides[1]), "attn_(q|k)=q8_0");
  EXPECT_EQ(tensor_type_override_spec(*parse_tensor_type_override("ffn=Q4_1")), "ffn=q4_1");
  p.overrides.push_back(*parse_tensor_type_override("ffn_down=q4_0"));
  TypeChoice ovfb = choose_tensor_type(p, "blk.0.ffn_down.weight", odd, has_out);
  EXPECT_EQ(ovfb.override_index, 2u);
  EXPECT_TRUE(ovfb.fallback);
  EXPECT_EQ(ovfb.type, GgmlType::F16);
  EXPECT_NE(ovfb.reason.find("row length 80"), std::string::npos);
  for (const char* bad : {"attn", "attn=q3_k_m", "attn=iq2_xs", "(=q8_0"}) {
    Result<TensorTypeOverride> o = parse_tensor_type_override(bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_EQ(o.error().option, "tensor_type") << bad;
    EXPECT_EQ(o.error().message().find("--"), std::string::npos) << o.error().message();
  }
  EXPECT_EQ(llama_file_type(GgmlType::Q8_0), 7u);
  EXPECT_EQ(llama_file_type(GgmlType::BF16), 32u);
}

TEST(ConvertTypes, FileTypeNames) {
  EXPECT_EQ(parse_file_type("q4_k_m")->id, 15u);
  EXPECT_EQ(parse_file_type("Q4_K")->name, "Q4_K_M");  // llama-quantize's alias
  EXPECT_EQ(parse_file_type("q3_k")->name, "Q3_K_M");
  EXPECT_EQ(parse_file_type("q5_k_s")->base, GgmlType::Q5_K);
  EXPECT_EQ(parse_file_type("Q6_K")->id, 18u);
  EXPECT_EQ(parse_file_type("q2_k")->id, 10u);
  EXPECT_EQ(parse_file_type("iq4_xs")->id, 30u);
  EXPECT_EQ(parse_file_type("f16")->id, 1u);
  EXPECT_FALSE(parse_file_type("q4_k_x"));
  EXPECT_FALSE(parse_file_type("q8_1"));
  EXPECT_EQ(file_type_of(GgmlType::Q4_K).name, "Q4_K_M");
  EXPECT_EQ(file_type_by_id(13)->name, "Q3_K_L");
  EXPECT_EQ(*parse_output_type("Q4_k"), GgmlType::Q4_K);
}

// llama-quantize's per-tensor rules on a TinyLlama-shaped model (22 layers, 32 heads, 4 kv heads,
// rows of 2048 / 5632): use_more_bits = layers 0-1, 19-21, and 4, 7, 10, 13, 16.
TEST(ConvertTypes, KQuantMixRules) {
  const ModelShape m{true, 22, 32, 4};
  const std::vector<uint64_t> sq{2048, 2048}, down{5632, 2048}, odd{576, 64};
  const auto type_of = [&](std::string_view mix, std::string_view name, const std::vector<uint64_t>& dims,
                           bool imatrix = false) {
    TypePolicy p{parse_file_type(mix)->base, false, {}, parse_file_type(mix), imatrix};
    return choose_tensor_type(p, name, dims, m).type;
  };
  using T = GgmlType;
  const int more[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
  for (int i = 0; i < 22; ++i) {
    const bool mb = std::find(std::begin(more), std::end(more), i) != std::end(more);
    const std::string v = "blk." + std::to_string(i) + ".attn_v.weight", d = "blk." + std::to_string(i) + ".ffn_down.weight";
    EXPECT_EQ(type_of("Q4_K_M", v, sq), mb ? T::Q6_K : T::Q4_K) << v;
    EXPECT_EQ(type_of("Q4_K_M", d, down), mb ? T::Q6_K : T::Q4_K) << d;
    EXPECT_EQ(type_of("Q5_K_M", d, down), mb ? T::Q6_K : T::Q5_K) << d;
    EXPECT_EQ(type_of("Q4_K_S", v, sq), i < 4 ? T::Q5_K : T::Q4_K) << v;
    EXPECT_EQ(type_of("Q4_K_S", d, down), i < 2 ? T::Q5_K : T::Q4_K) << d;
    EXPECT_EQ(type_of("Q3_K_M", v, sq), i < 2 ? T::Q5_K : T::Q4_K) << v;
    EXPECT_EQ(type_of("Q3_K_M", d, down), i < 1 ? T::Q5_K : T::Q4_K) << d;
    EXPECT_EQ(type_of("Q4_0", d, down, true), i < 2 ? T::Q4_1 : T::Q4_0) << d;
    EXPECT_EQ(type_of("Q4_0", d, down, false), T::Q4_0) << d;
    EXPECT_EQ(type_of("IQ4_XS", d, down, false), i < 2 ? T::Q5_K : T::IQ4_XS) << d;
    EXPECT_EQ(type_of("IQ4_XS", d, down, true), T::IQ4_XS) << d;
  }
  EXPECT_EQ(type_of("Q2_K", "blk.5.attn_v.weight", sq), T::Q4_K);  // n_gqa = 8 >= 4
  EXPECT_EQ(type_of("Q2_K", "blk.5.ffn_down.weight", down), T::Q3_K);
  EXPECT_EQ(type_of("Q2_K", "blk.5.attn_output.weight", sq), T::Q3_K);
  EXPECT_EQ(type_of("Q2_K", "blk.5.attn_q.weight", sq), T::Q2_K);
  EXPECT_EQ(type_of("Q3_K_L", "blk.5.attn_v.weight", sq), T::Q5_K);
  EXPECT_EQ(type_of("Q3_K_L", "blk.5.attn_output.weight", sq), T::Q5_K);
  EXPECT_EQ(type_of("Q3_K_M", "blk.5.attn_output.weight", sq), T::Q4_K);
  EXPECT_EQ(type_of("Q3_K_S", "blk.5.ffn_down.weight", down), T::Q3_K);
  EXPECT_EQ(type_of("IQ4_NL", "blk.5.attn_v.weight", sq), T::Q5_K);
  EXPECT_EQ(type_of("Q6_K", "output.weight", sq), T::Q6_K);
  EXPECT_EQ(type_of("Q8_0", "output.weight", sq), T::Q8_0);
  EXPECT_EQ(type_of("Q4_K_M", "token_embd.weight", sq), T::Q4_K);
  EXPECT_EQ(type_of("Q5_1", "output.weight", sq), T::Q6_K);
  // Rows that are not a multiple of 256: llama.cpp's fallbacks.
  EXPECT_EQ(type_of("Q4_K_M", "blk.5.attn_q.weight", odd), T::Q5_0);
  EXPECT_EQ(type_of("Q5_K_M", "blk.5.attn_q.weight", odd), T::Q5_1);
  EXPECT_EQ(type_of("Q4_K_M", "blk.0.attn_v.weight", odd), T::Q8_0);
  EXPECT_EQ(type_of("Q3_K_S", "blk.5.attn_q.weight", odd), T::IQ4_NL);
  EXPECT_EQ(type_of("Q2_K", "blk.5.attn_q.weight", odd), T::IQ4_NL);
  EXPECT_EQ(type_of("IQ4_XS", "blk.5.attn_q.weight", odd), T::IQ4_NL);
  EXPECT_EQ(type_of("Q6_K", "output.weight", odd), T::Q8_0);
  EXPECT_EQ(type_of("Q4_K_M", "blk.5.attn_q.weight", std::vector<uint64_t>{80, 64}), T::F16);
  // --pure: the base everywhere, with the same fallbacks.
  TypePolicy pure{T::Q4_K, true, {}, parse_file_type("Q4_K_M")};
  EXPECT_EQ(choose_tensor_type(pure, "blk.0.attn_v.weight", sq, m).type, T::Q4_K);
  EXPECT_EQ(choose_tensor_type(pure, "output.weight", sq, m).type, T::Q4_K);
  EXPECT_EQ(choose_tensor_type(pure, "output.weight", odd, m).type, T::Q5_0);
}

nlohmann::json good_config() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 96},
          {"max_position_embeddings", 2048}, {"vocab_size", 300}, {"rms_norm_eps", 1e-5}};
}

TEST(ConvertConfig, ReadsAndRefuses) {
  auto hp = hparams_from_hf_config(good_config(), "config.json");
  ASSERT_TRUE(hp.ok()) << hp.error().message();
  EXPECT_EQ(hp->head_dim, 16);
  EXPECT_FALSE(hp->tie_embeddings);
  struct Case { const char* key; nlohmann::json value; const char* message; };
  for (const Case& c : {Case{"architectures", {"GPT2LMHeadModel"}, "config.json: architectures: 'GPT2LMHeadModel' is not supported"},
                        Case{"num_attention_heads", 6, "config.json: num_attention_heads: 6 does not divide hidden_size 64"},
                        Case{"num_key_value_heads", 3, "config.json: num_key_value_heads: 3 does not divide"},
                        Case{"hidden_size", -1, "config.json: hidden_size: -1 is out of range"},
                        Case{"vocab_size", "x", "config.json: vocab_size: \"x\" is not an integer"}}) {
    nlohmann::json cfg = good_config();
    cfg[c.key] = c.value;
    auto r = hparams_from_hf_config(cfg, "config.json");
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_EQ(r.error().message().rfind(c.message, 0), 0u) << r.error().message();
  }
  EXPECT_EQ(gguf_name_for_hf("model.layers.12.self_attn.k_proj.weight")->gguf, "blk.12.attn_k.weight");
  EXPECT_EQ(*hf_name_for_gguf("blk.3.ffn_down.weight"), "model.layers.3.mlp.down_proj.weight");
  EXPECT_FALSE(gguf_name_for_hf("model.layers.x.mlp.up_proj.weight"));
}

TEST(ConvertRows, ErrorStatsMatchDequantized) {
  const uint32_t seed = 42;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t rows = 8, n = 64;
  std::vector<float> src(rows * n);
  for (float& v : src) v = nd(rng);
  std::vector<BlockQ4_0> out(rows * n / 32);
  ErrorStats st;
  convert_rows(GgmlType::F32, reinterpret_cast<const std::byte*>(src.data()), GgmlType::Q4_0,
               reinterpret_cast<std::byte*>(out.data()), n, 0, rows, RowOrder{}, 2, st);
  std::vector<BlockQ4_0> ref(out.size());
  quantize_row_q4_0_ref(src.data(), ref.data(), rows * n);
  ASSERT_EQ(std::memcmp(out.data(), ref.data(), out.size() * sizeof(BlockQ4_0)), 0) << "seed " << seed;
  std::vector<float> back(src.size());
  dequantize_row_q4_0(ref.data(), back.data(), rows * n);
  double sum = 0, mx = 0;
  for (size_t i = 0; i < src.size(); ++i) {
    sum += double(back[i] - src[i]) * (back[i] - src[i]);
    mx = std::max(mx, double(std::fabs(back[i] - src[i])));
  }
  EXPECT_EQ(st.n, src.size());
  EXPECT_NEAR(st.rmse(), std::sqrt(sum / src.size()), 1e-9);
  EXPECT_EQ(st.max_abs, mx);
  // q4_0 of unit Gaussians: rmse sits in a band (a too-good result is as suspicious as a bad one).
  EXPECT_GT(st.rmse(), 0.05);
  EXPECT_LT(st.rmse(), 0.2);
}

// An imatrix that gives a whole super-block zero weight makes ggml's weighted q4_K write a NaN scale
// (0/0); llama-quantize then refuses the file. We round such rows plainly and count them.
TEST(ConvertRows, ZeroImportanceBlockFallsBackToPlain) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t rows = 4, n = 512;
  std::vector<float> src(rows * n), imp(n, 1.0f);
  for (float& v : src) v = nd(rng);
  std::fill(imp.begin(), imp.begin() + 256, 0.0f);  // the first super-block of every row: no weight
  std::vector<BlockQ4_K> weighted(rows * n / 256);
  quantize_row_q4_K_weighted(src.data(), weighted.data(), n, imp.data());
  std::vector<float> back(n);
  dequantize_row_q4_K(weighted.data(), back.data(), n);
  ASSERT_TRUE(std::isnan(back[0])) << "ggml's weighted q4_K no longer writes NaN here: drop the fallback?";
  std::vector<BlockQ4_K> out(rows * n / 256), plain(out.size());
  ErrorStats st;
  convert_rows(GgmlType::F32, reinterpret_cast<const std::byte*>(src.data()), GgmlType::Q4_K,
               reinterpret_cast<std::byte*>(out.data()), n, 0, rows, RowOrder{}, 2, st, {}, imp);
  EXPECT_EQ(st.unweighted_rows, static_cast<uint64_t>(rows));
  quantize_row_q4_K_ref(src.data(), plain.data(), rows * n);
  EXPECT_EQ(std::memcmp(out.data(), plain.data(), out.size() * sizeof(BlockQ4_K)), 0);
  EXPECT_TRUE(std::isfinite(st.rmse()));
}

}  // namespace
}  // namespace qe::convert
