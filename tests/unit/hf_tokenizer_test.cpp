// hf_tokenizer_to_gguf / gguf_tokenizer_to_hf on small synthetic tokenizers and on broken inputs: every
// error is one line naming the file and the field.
#include "tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf_writer.h"
#include "formats/safetensors_json.h"
#include "tokenizer/hf_tokenizer_pre.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using qe::GgufKv;
using qe::GgufValue;
using qe::Result;

class HfTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(QE_TEST_TMPDIR) + "/hf_tok_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << text;
  }
  // A byte-level BPE over "a", "b", "ab", "Ġ" with one merge, plus added tokens.
  static Json bpe_json() {
    return Json::parse(R"({
      "version": "1.0",
      "added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true},
                       {"id": 6, "content": "<tag>", "special": false}],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "<|endoftext|>": 4},
                "merges": ["a b"]}})");
  }
  Result<std::vector<GgufKv>> import() {
    warnings_.clear();
    return qe::tokenizer::hf_tokenizer_to_gguf(dir_, warnings_);
  }
  // The keys written as a GGUF file (dir_/t.gguf) and opened.
  void write_gguf(const std::vector<GgufKv>& kvs, std::optional<qe::GgufFile>& out) {
    qe::GgufWriter w;
    for (const GgufKv& kv : kvs) ASSERT_TRUE(w.set(kv.key, kv.value).ok());
    const std::string path = dir_ + "/t.gguf";
    ASSERT_TRUE(w.open(path, true).ok());
    ASSERT_TRUE(w.finish().ok());
    Result<qe::GgufFile> g = qe::GgufFile::open(path);
    ASSERT_TRUE(g.ok()) << g.error().message();
    out = std::move(*g);
  }
  // The directory's tokenizer imported, written as a GGUF, and exported back to HF files.
  void import_and_export(std::optional<qe::tokenizer::HfTokenizerFiles>& out) {
    Result<std::vector<GgufKv>> kvs = import();
    ASSERT_TRUE(kvs.ok()) << kvs.error().message();
    std::optional<qe::GgufFile> g;
    ASSERT_NO_FATAL_FAILURE(write_gguf(*kvs, g));
    Result<qe::tokenizer::HfTokenizerFiles> hf = qe::tokenizer::gguf_tokenizer_to_hf(*g);
    ASSERT_TRUE(hf.ok()) << hf.error().message();
    out = std::move(*hf);
  }
  static const GgufValue* find(const std::vector<GgufKv>& kvs, std::string_view key) {
    for (const GgufKv& kv : kvs) {
      if (kv.key == key) return &kv.value;
    }
    return nullptr;
  }
  std::string dir_;
  std::vector<std::string> warnings_;
};

TEST_F(HfTokenizerTest, Sha256MatchesKnownVectors) {
  EXPECT_EQ(qe::tokenizer::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(qe::tokenizer::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(qe::tokenizer::sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
  EXPECT_EQ(qe::tokenizer::pre_check_text().size(), 431u);  // llama.cpp's chktxt in UTF-8
}

TEST_F(HfTokenizerTest, ImportsSmallBpe) {
  write("tokenizer.json", bpe_json().dump());
  write("tokenizer_config.json", R"({"eos_token": "<|endoftext|>", "chat_template": [{"name": "default", "template": "T"},
                                      {"name": "tool use", "template": "U"}]})");
  Result<std::vector<GgufKv>> kvs = import();
  ASSERT_TRUE(kvs.ok()) << kvs.error().message();
  const auto* tokens = find(*kvs, "tokenizer.ggml.tokens")->get<qe::GgufArray>()->get<std::string>();
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(*tokens, (std::vector<std::string>{"a", "b", "ab", "Ġ", "<|endoftext|>", "[PAD5]", "<tag>"}));
  const auto* types = find(*kvs, "tokenizer.ggml.token_type")->get<qe::GgufArray>()->get<int32_t>();
  EXPECT_EQ(*types, (std::vector<int32_t>{1, 1, 1, 1, 3, 5, 4}));
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.merges")->get<qe::GgufArray>()->get<std::string>(), std::vector<std::string>{"a b"});
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.pre")->get<std::string>(), "gpt-2");
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.eos_token_id")->get<uint32_t>(), 4u);
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.add_bos_token")->get<bool>(), false);
  EXPECT_EQ(*find(*kvs, "tokenizer.chat_template")->get<std::string>(), "T");
  EXPECT_EQ(*find(*kvs, "tokenizer.chat_template.tool_use")->get<std::string>(), "U");
  // A made-up vocabulary has no hash llama.cpp knows: the structure decides, with a warning naming it.
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("assumed \"gpt-2\""), std::string::npos) << warnings_[0];
}

TEST_F(HfTokenizerTest, MergesListFormEncodesSpaces) {
  Json j = bpe_json();
  j["model"]["vocab"] = Json::parse(R"({"a": 0, " ": 1, "a ": 2, "Ġ": 3, "<|endoftext|>": 4})");
  j["model"]["merges"] = Json::parse(R"([["a", " "]])");
  write("tokenizer.json", j.dump());
  Result<std::vector<GgufKv>> kvs = import();
  ASSERT_TRUE(kvs.ok()) << kvs.error().message();
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.merges")->get<qe::GgufArray>()->get<std::string>(),
            std::vector<std::string>{"a \xC4\xA0"});  // as gguf-py: a space inside a part becomes U+0120
}

TEST_F(HfTokenizerTest, RecognisesPreTokenizerFamilies) {
  std::string why;
  bool prefix = false;
  auto names = [&](const char* json, bool ignore_merges) {
    auto p = qe::tokenizer::hf_pre_tokenizer_patterns(Json::parse(json), why, prefix);
    return p ? qe::tokenizer::pre_names_for_patterns(*p, ignore_merges) : std::vector<std::string>{};
  };
  EXPECT_EQ(names(R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})", false).front(), "gpt-2");
  EXPECT_EQ(names(R"({"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},
                     {"type":"ByteLevel","use_regex":true}]})", false).front(), "smollm");
  const char* l3 = R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
      "behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]})";
  EXPECT_EQ(names(l3, true).front(), "llama-bpe");
  EXPECT_EQ(names(l3, false).front(), "smaug-bpe");
  const char* qwen = R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
      "behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]})";
  EXPECT_EQ(names(qwen, false).front(), "qwen2");
  EXPECT_FALSE(qe::tokenizer::hf_pre_tokenizer_patterns(Json::parse(R"({"type":"Whitespace"})"), why, prefix));
  EXPECT_NE(why.find("Whitespace"), std::string::npos);
  // Export spells every runtime name back so that import recognises it.
  for (const char* pre : {"gpt-2", "smollm", "llama-bpe", "qwen2", "default", "falcon"}) {
    auto j = qe::tokenizer::hf_pre_tokenizer_for(pre);
    ASSERT_TRUE(j) << pre;
    auto p = qe::tokenizer::hf_pre_tokenizer_patterns(*j, why, prefix);
    ASSERT_TRUE(p) << pre << ": " << why;
    EXPECT_EQ(*p, qe::tokenizer::find_pre_tokenizer(pre)->patterns) << pre;
  }
}

TEST_F(HfTokenizerTest, ErrorsNameFileAndField) {
  struct Case {
    std::string file, text, want;
  };
  Json dup_id = bpe_json();
  dup_id["model"]["vocab"]["c"] = 1;
  Json bad_merge = bpe_json();
  bad_merge["model"]["merges"] = Json::parse(R"(["a  b"])");
  Json unknown_merge = bpe_json();
  unknown_merge["model"]["merges"] = Json::parse(R"(["a x"])");
  Json neg_id = bpe_json();
  neg_id["added_tokens"][0]["id"] = -3;
  Json wordpiece = bpe_json();
  wordpiece["model"]["type"] = "WordPiece";
  Json far_id = bpe_json();  // ids up to 2e9 would be placeholders: a few bytes asking for 2e9 strings
  far_id["model"]["vocab"]["far"] = 2000000000;
  const std::vector<Case> cases = {
      {"tokenizer.json", "{\"model\": ", "tokenizer.json"},
      {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}}})", "tokenizer.json"},
      {"tokenizer.json", dup_id.dump(), "tokenizer.json: model.vocab: id 1 is used by both"},
      {"tokenizer.json", bad_merge.dump(), "tokenizer.json: model.merges[0]"},
      {"tokenizer.json", unknown_merge.dump(), "tokenizer.json: model.merges[0]"},
      {"tokenizer.json", neg_id.dump(), "tokenizer.json: added_tokens[0].id: -3 is out of range"},
      {"tokenizer.json", wordpiece.dump(), "tokenizer.json: model.type"},
      {"tokenizer_config.json", R"({"add_bos_token": "yes"})", "tokenizer_config.json: add_bos_token: is not a boolean"},
      {"config.json", R"({"vocab_size": 3})", "config.json: vocab_size: 3 is too small"},
      {"tokenizer.json", far_id.dump(), "tokenizer.json: model.vocab: id 2000000000 is far past the 7 tokens"},
      {"config.json", R"({"vocab_size": 2000000000})", "config.json: vocab_size: 2000000000 is far more than the tokenizer's 6"},
      {"config.json", R"({"eos_token_id": "x"})", "config.json: eos_token_id"},
  };
  for (const Case& c : cases) {
    SetUp();
    if (c.file != "tokenizer.json") write("tokenizer.json", bpe_json().dump());
    write(c.file, c.text);
    Result<std::vector<GgufKv>> kvs = import();
    ASSERT_FALSE(kvs.ok()) << c.file << ": " << c.text;
    const std::string msg = kvs.error().message();
    EXPECT_NE(msg.find(c.want), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  SetUp();
  Result<std::vector<GgufKv>> none = import();
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message().find("tokenizer.json: missing"), std::string::npos) << none.error().message();
}

// A ModelProto by hand: pieces (string 1, float 2, enum 3), trainer_spec (2) and normalizer_spec (3).
std::string proto_piece(const std::string& piece, float score, int type) {
  std::string m;
  m += char(0x0A), m += char(piece.size()), m += piece;
  m += char(0x15);
  char f[4];
  std::memcpy(f, &score, 4);
  m.append(f, 4);
  m += char(0x18), m += char(type);
  return char(0x0A) + std::string(1, char(m.size())) + m;
}

TEST_F(HfTokenizerTest, ImportsSentencePieceModel) {
  std::string proto = proto_piece("<unk>", 0, 2) + proto_piece("<s>", 0, 3) + proto_piece("</s>", 0, 3) +
                      proto_piece("<0x41>", 0, 6) + proto_piece("\xE2\x96\x81" "a", -1.5f, 1) +
                      proto_piece("<tag>", 0, 4);
  proto += std::string("\x1A\x02\x18\x00", 4);  // normalizer_spec { add_dummy_prefix: false }
  write("tokenizer.model", proto);
  Result<std::vector<GgufKv>> kvs = import();
  ASSERT_TRUE(kvs.ok()) << kvs.error().message();
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.model")->get<std::string>(), "llama");
  EXPECT_EQ(find(*kvs, "tokenizer.ggml.tokens")->get<qe::GgufArray>()->get<std::string>()->at(4), "\xE2\x96\x81" "a");
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.token_type")->get<qe::GgufArray>()->get<int32_t>(),
            (std::vector<int32_t>{2, 3, 3, 6, 1, 4}));
  EXPECT_FLOAT_EQ(find(*kvs, "tokenizer.ggml.scores")->get<qe::GgufArray>()->get<float>()->at(4), -1.5f);
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.bos_token_id")->get<uint32_t>(), 1u);  // trainer_spec default
  EXPECT_EQ(*find(*kvs, "tokenizer.ggml.add_space_prefix")->get<bool>(), false);

  // Truncated and malformed protos are errors naming the field.
  write("tokenizer.model", proto.substr(0, proto.size() - 9));
  Result<std::vector<GgufKv>> bad = import();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("tokenizer.model"), std::string::npos) << bad.error().message();
  write("tokenizer.model", std::string("\x0A\x03\x18\x09\x00", 5));
  bad = import();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("pieces[0].type: unknown piece type 9"), std::string::npos) << bad.error().message();
}

// Whatever the importer accepts loads: a SentencePiece-style vocabulary without a BOS token (none named,
// and the default id 1 past a one-token vocabulary) must not leave the loader's default add_bos = true
// pointing at nothing (fuzz_hf_tokenizer found this one).
TEST_F(HfTokenizerTest, NoBosTokenMeansNoBosAdded) {
  auto imports_and_loads = [&](const char* what) {
    Result<std::vector<GgufKv>> kvs = import();
    ASSERT_TRUE(kvs.ok()) << what << ": " << kvs.error().message();
    const GgufValue* add_bos = find(*kvs, "tokenizer.ggml.add_bos_token");
    ASSERT_NE(add_bos, nullptr) << what;
    EXPECT_FALSE(*add_bos->get<bool>()) << what;
    EXPECT_NE(std::find_if(warnings_.begin(), warnings_.end(),
                           [](const std::string& w) { return w.find("no BOS token") != std::string::npos; }),
              warnings_.end())
        << what;
    std::optional<qe::GgufFile> g;
    ASSERT_NO_FATAL_FAILURE(write_gguf(*kvs, g));
    Result<qe::tokenizer::Tokenizer> tok = qe::tokenizer::Tokenizer::from_gguf(*g);
    ASSERT_TRUE(tok.ok()) << what << ": " << tok.error().message();
    EXPECT_FALSE(tok->add_bos()) << what;
  };
  write("tokenizer.json", R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}})");
  imports_and_loads("tokenizer.json, byte_fallback");
  fs::remove(dir_ + "/tokenizer.json");
  write("tokenizer.model", proto_piece("<unk>", 0, 2));
  imports_and_loads("tokenizer.model");

  // Asked to add EOS with no EOS token anywhere: refused, as BOS is.
  fs::remove(dir_ + "/tokenizer.model");
  write("tokenizer.json", bpe_json().dump());
  write("tokenizer_config.json", R"({"add_eos_token": true})");
  Result<std::vector<GgufKv>> no_eos = import();
  ASSERT_FALSE(no_eos.ok());
  EXPECT_NE(no_eos.error().message().find("tokenizer_config.json: eos_token: EOS is to be added but no eos token id"),
            std::string::npos)
      << no_eos.error().message();
}

TEST_F(HfTokenizerTest, ExportRoundTripsSmallBpe) {
  write("tokenizer.json", bpe_json().dump());
  write("tokenizer_config.json", R"({"eos_token": "<|endoftext|>", "chat_template": "T"})");
  std::optional<qe::tokenizer::HfTokenizerFiles> hf;
  ASSERT_NO_FATAL_FAILURE(import_and_export(hf));
  const Json& tj = hf->tokenizer_json;
  EXPECT_EQ(tj["model"]["merges"], Json::parse(R"([["a", "b"]])"));
  EXPECT_EQ(tj["model"]["vocab"]["<tag>"], 6);
  EXPECT_EQ(tj["added_tokens"].size(), 2u);
  EXPECT_EQ(tj["added_tokens"][1]["special"], false);
  EXPECT_EQ(tj["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(hf->tokenizer_config_json["eos_token"], "<|endoftext|>");
  EXPECT_EQ(hf->tokenizer_config_json["chat_template"], "T");
}

// A vocabulary padded to config.json's vocab_size exports as one tokenizer.json vocab in id order (the
// exporter builds the object without a lookup per key: 65k keys are quick, not O(n^2)).
TEST_F(HfTokenizerTest, PaddedVocabExportsInIdOrder) {
  write("tokenizer.json", bpe_json().dump());
  write("config.json", R"({"vocab_size": 65000})");
  std::optional<qe::tokenizer::HfTokenizerFiles> hf;
  ASSERT_NO_FATAL_FAILURE(import_and_export(hf));
  const Json& vocab = hf->tokenizer_json["model"]["vocab"];
  ASSERT_EQ(vocab.size(), 65000u);
  int expected = 0;
  for (const auto& [text, id] : vocab.items()) ASSERT_EQ(id, expected++) << text;
  EXPECT_EQ(vocab.begin().key(), "a");
  EXPECT_EQ(std::prev(vocab.end()).key(), "[PAD64999]");
  // And the strict parser reads the exported text back with its keys in the same order.
  Result<Json> again = qe::parse_ordered_json_strict(hf->tokenizer_json.dump(), "tokenizer.json", "");
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ((*again)["model"]["vocab"], vocab);
}

}  // namespace
