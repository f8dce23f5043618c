// qconvert's building blocks: the RoPE row permutation (against convert_hf_to_gguf.py's reshape/swapaxes,
// written out here as index arithmetic), the type policy (llama-quantize's rules), HF config checks and the
// row converter's error statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "formats/blocks.h"
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
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_norm.weight", vec, true).type, GgmlType::F32);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_q.weight", mat, true).type, GgmlType::Q4_0);
  EXPECT_EQ(choose_tensor_type(p, "output.weight", mat, true).type, GgmlType::Q8_0);
  EXPECT_EQ(choose_tensor_type(p, "token_embd.weight", mat, true).type, GgmlType::Q4_0);
  EXPECT_EQ(choose_tensor_type(p, "token_embd.weight", mat, false).type, GgmlType::Q8_0);  // tied
  TypeChoice fb = choose_tensor_type(p, "blk.0.ffn_down.weight", odd, true);
  EXPECT_EQ(fb.type, GgmlType::F16);
  EXPECT_TRUE(fb.fallback);
  EXPECT_NE(fb.reason.find("row length 80"), std::string::npos);
  p.pure = true;
  EXPECT_EQ(choose_tensor_type(p, "output.weight", mat, true).type, GgmlType::Q4_0);
  p.pure = false;
  p.overrides.push_back(*parse_tensor_type_override("attn_(q|k)=q8_0"));
  p.overrides.push_back(*parse_tensor_type_override("attn=bf16"));
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_k.weight", mat, true).type, GgmlType::Q8_0);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_v.weight", mat, true).type, GgmlType::BF16);
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_norm.weight", vec, true).type, GgmlType::F32);
  // The choice records which override decided it; the words are the front end's.
  EXPECT_EQ(choose_tensor_type(p, "blk.0.attn_k.weight", mat, true).override_index, 0u);
  TypeChoice ov = choose_tensor_type(p, "blk.0.attn_v.weight", odd, true);
  EXPECT_EQ(ov.override_index, 1u);
  EXPECT_EQ(ov.type, GgmlType::BF16);  // bf16 has no blocks: no fallback
  EXPECT_TRUE(ov.reason.empty());
  EXPECT_FALSE(choose_tensor_type(p, "output.weight", mat, true).override_index);
  EXPECT_EQ(tensor_type_override_spec(p.overrides[0]), "attn_(q|k)=q8_0");
  EXPECT_EQ(tensor_type_override_spec(*parse_tensor_type_override("ffn=Q4_1")), "ffn=q4_1");
  p.overrides.insert(p.overrides.begin(), *parse_tensor_type_override("ffn_down=q4_0"));
  TypeChoice ovfb = choose_tensor_type(p, "blk.0.ffn_down.weight", odd, true);
  EXPECT_EQ(ovfb.override_index, 0u);
  EXPECT_TRUE(ovfb.fallback);
  EXPECT_EQ(ovfb.type, GgmlType::F16);
  EXPECT_NE(ovfb.reason.find("row length 80"), std::string::npos);
  for (const char* bad : {"attn", "attn=q6_k", "(=q8_0"}) {
    Result<TensorTypeOverride> o = parse_tensor_type_override(bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_EQ(o.error().option, "tensor_type") << bad;
    EXPECT_EQ(o.error().message().find("--"), std::string::npos) << o.error().message();
  }
  EXPECT_EQ(llama_file_type(GgmlType::Q8_0), 7u);
  EXPECT_EQ(llama_file_type(GgmlType::BF16), 32u);
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

}  // namespace
}  // namespace qe::convert
