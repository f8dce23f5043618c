// Hostile inputs that the fuzz targets (tests/fuzz) found, or that hardening their parsers turned up,
// each reduced to the one thing wrong with it: the parser must answer with one clear Error naming the
// file and field, never crash, hang or let the value through to the code after it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "convert/llama_config.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "model/config.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"

namespace qe {
namespace {

std::string tmp_path(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/hostile_" + name + "_" + std::to_string(::getpid()) + ".gguf";
}

// The message of the Error `r` holds ("" when it holds a value).
template <class T>
std::string error_of(const Result<T>& r) {
  return r.ok() ? "" : r.error().message();
}

// A GGUF of metadata only, read back (the file is gone once mapped).
Result<GgufFile> gguf_with(const std::string& name, const std::vector<GgufKv>& kvs) {
  const std::string path = tmp_path(name);
  GgufWriter w;
  for (const GgufKv& kv : kvs) EXPECT_TRUE(w.set(kv.key, kv.value).ok()) << kv.key;
  EXPECT_TRUE(w.open(path, /*overwrite=*/true).ok());
  EXPECT_TRUE(w.finish().ok());
  Result<GgufFile> f = GgufFile::open(path);
  ::unlink(path.c_str());
  return f;
}

// A llama model's hyperparameters (no tensors: load_config reads the metadata first) plus `extra`.
Result<model::Config> config_with(const std::string& name, std::vector<GgufKv> extra) {
  std::vector<GgufKv> kvs = {{"general.architecture", GgufValue::str("llama")},
                             {"llama.embedding_length", GgufValue::u32(64)},
                             {"llama.block_count", GgufValue::u32(1)},
                             {"llama.feed_forward_length", GgufValue::u32(96)},
                             {"llama.attention.head_count", GgufValue::u32(4)},
                             {"llama.attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f)}};
  kvs.insert(kvs.end(), extra.begin(), extra.end());
  Result<GgufFile> f = gguf_with(name, kvs);
  if (!f) return f.error();
  return model::load_config(*f);
}

// A float64 freq_base past float's range used to become inf and pass "> 1"; NaN and inf in float32
// keys are refused the same way, and a freq_scale of 0 or below (it divides positions) too.
TEST(HostileGguf, RopeFloatsMustBeFinite) {
  const std::string path = tmp_path("rope");
  auto err = [&](const char* name, GgufKv kv) { return error_of(config_with(name, {std::move(kv)})); };
  EXPECT_EQ(err("rope", {"llama.rope.freq_base", GgufValue::f64(1e300)}),
            path + ": key llama.rope.freq_base: inf is not a finite float");
  EXPECT_EQ(err("rope", {"llama.rope.freq_base", GgufValue::f32(INFINITY)}),
            path + ": key llama.rope.freq_base: inf is not a finite float");
  EXPECT_EQ(err("rope", {"llama.rope.freq_scale", GgufValue::f32(NAN)}),
            path + ": key llama.rope.freq_scale: nan is not a finite float");
  EXPECT_EQ(err("rope", {"llama.rope.freq_scale", GgufValue::f32(0.0f)}),
            path + ": key llama.rope.freq_scale: 0 must be > 0");
  EXPECT_EQ(error_of(config_with("rope", {{"llama.rope.scaling.type", GgufValue::str("linear")},
                                          {"llama.rope.scaling.factor", GgufValue::f64(1e39)}})),
            path + ": key llama.rope.scaling.factor: inf is not a finite float");
}

// fuzz_hf_tokenizer: a tokenizer.model piece that is not UTF-8 imported fine, then the exporter's
// tokenizer.json could not be written without changing it (nlohmann throws, qconvert's replace mode
// turns it into U+FFFD, possibly a duplicate token). The reader refuses it; the exporter refuses a
// GGUF token that is not UTF-8 from any other source.
TEST(HostileTokenizer, SentencePiecePieceMustBeUtf8) {
  // ModelProto { pieces { piece: "a\xFFb" } }
  const std::string proto(
      "\x0A\x05\x0A\x03"
      "a\xFF"
      "b",
      7);
  Result<tokenizer::SpmModel> m = tokenizer::parse_sentencepiece_model(
      {reinterpret_cast<const uint8_t*>(proto.data()), proto.size()}, "tokenizer.model");
  EXPECT_EQ(error_of(m), "tokenizer.model: pieces[0].piece: is not valid UTF-8 at its byte 1 (byte 5)");
}

TEST(HostileTokenizer, ExportRefusesTokensThatAreNotUtf8) {
  Result<GgufFile> f = gguf_with(
      "export", {{"tokenizer.ggml.model", GgufValue::str("llama")},
                 {"tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"<unk>", "<s>", "</s>",
                                                                                     "a\xFF"
                                                                                     "b"})}});
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(error_of(tokenizer::gguf_tokenizer_to_hf(*f)),
            tmp_path("export") +
                ": tokenizer.ggml.tokens: entry 3 is not valid UTF-8 (at byte 1); tokenizer.json "
                "cannot hold it");
}

// fuzz_hf_config (its write-back check): rope_theta 1e39 is finite as a double, inf as the float it is
// kept in; it passed "> 1", and hf_config_json wrote it back as null.
TEST(HostileConfigJson, FloatsMustFitAFloat) {
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                        {"hidden_size", 64},
                        {"num_hidden_layers", 1},
                        {"num_attention_heads", 4},
                        {"intermediate_size", 96},
                        {"max_position_embeddings", 256},
                        {"vocab_size", 256},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", 1e39}};
  EXPECT_EQ(error_of(convert::hparams_from_hf_config(cfg, "config.json")),
            "config.json: rope_theta: 1e+39 is out of float range");
  cfg["rope_theta"] = 10000.0;
  cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1e300}};
  EXPECT_EQ(error_of(convert::hparams_from_hf_config(cfg, "config.json")),
            "config.json: rope_scaling.factor: -1e+300 is out of float range");
}

}  // namespace
}  // namespace qe
