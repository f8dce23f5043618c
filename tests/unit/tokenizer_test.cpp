// Tokenizer behaviour on small hand-built vocabularies: BPE merge order and pre-tokenizers, SPM scores
// and byte fallback, special-token splitting, end-of-generation ids, detokenisation, Utf8Stream, and
// the errors bad metadata gives. The real vocabularies are checked against HF in
// tests/python/test_tokenizer_hf.py.
#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace qe::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// A byte-level BPE vocabulary: ids 0..255 are the GPT-2 byte characters, then `extra` tokens.
Vocab bpe_vocab(std::vector<std::string> extra, std::vector<std::string> merges, std::string pre = "gpt2") {
  Vocab v = default_vocab(VocabModel::kBpe, pre);
  for (int b = 0; b < 256; ++b) v.tokens.push_back(gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
  for (std::string& t : extra) v.tokens.push_back(std::move(t));
  v.merges = std::move(merges);
  resolve_special_tokens(v);
  return v;
}

int32_t byte_id(char c) { return static_cast<uint8_t>(c); }  // in bpe_vocab

Tokenizer make(Vocab v) {
  Result<Tokenizer> t = Tokenizer::create(std::move(v));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  return std::move(t).value();
}

TEST(TokenizerBpe, LowestRankMergesFirst) {
  // "ab"=256, "bc"=257, "abc"=258.
  Tokenizer t1 = make(bpe_vocab({"ab", "bc", "abc"}, {"a b", "b c", "ab c"}));
  EXPECT_EQ(t1.tokenize("abc", false, false), (Ids{258}));
  // Without a merge to finish, the rank decides where the word splits.
  Tokenizer t2 = make(bpe_vocab({"ab", "bc"}, {"a b", "b c"}));
  EXPECT_EQ(t2.tokenize("abc", false, false), (Ids{256, byte_id('c')}));
  Tokenizer t3 = make(bpe_vocab({"ab", "bc"}, {"b c", "a b"}));
  EXPECT_EQ(t3.tokenize("abc", false, false), (Ids{byte_id('a'), 257}));
  // Equal pairs: the leftmost merges first ("aaa" -> "aa" "a").
  Tokenizer t4 = make(bpe_vocab({"aa"}, {"a a"}));
  EXPECT_EQ(t4.tokenize("aaa", false, false), (Ids{256, byte_id('a')}));
}

TEST(TokenizerBpe, SpaceIsAByteCharacterAndWordsSplit) {
  // GPT-2 writes a space as "Ġ" (U+0120); " a" is one word, so "Ġa" can form; "a b" cannot merge "a Ġ".
  Tokenizer t = make(bpe_vocab({"\xC4\xA0" "a", "a\xC4\xA0"}, {"\xC4\xA0 a", "a \xC4\xA0"}));
  EXPECT_EQ(t.tokenize("a a", false, false), (Ids{byte_id('a'), 256}));
  EXPECT_EQ(t.detokenize(t.tokenize("a a", false, false)), "a a");
}

TEST(TokenizerBpe, PreTokenizerDecidesDigitSplits) {
  const std::vector<std::string> extra = {"12", "123"};
  const std::vector<std::string> merges = {"1 2", "12 3"};
  EXPECT_EQ(make(bpe_vocab(extra, merges, "gpt2")).tokenize("123", false, false), (Ids{257}));
  // SmolLM: every digit is its own word.
  EXPECT_EQ(make(bpe_vocab(extra, merges, "smollm")).tokenize("123", false, false),
            (Ids{byte_id('1'), byte_id('2'), byte_id('3')}));
  // Llama 3: digits in threes.
  EXPECT_EQ(make(bpe_vocab(extra, merges, "llama-bpe")).tokenize("1231", false, false),
            (Ids{257, byte_id('1')}));
}

TEST(TokenizerBpe, PreTokenizerPieces) {
  Result<PreTokenizer> p = PreTokenizer::create(find_pre_tokenizer("smollm")->patterns);
  ASSERT_TRUE(p.ok());
  std::vector<std::string_view> w;
  p->split("Hello  world's 42\n", w);
  EXPECT_EQ(w, (std::vector<std::string_view>{"Hello", " ", " world", "'s", " ", "4", "2", "\n"}));
  // Invalid UTF-8 never matches but is kept, so BPE still sees every byte.
  w.clear();
  p->split("a\xFF" "b", w);
  std::string joined;
  for (std::string_view s : w) joined += s;
  EXPECT_EQ(joined, "a\xFF" "b");
}

TEST(TokenizerSpecial, LongestFirstAndNeverSplit) {
  Vocab v = bpe_vocab({"<|im", "<|im_end|>", "<tool>"}, {});
  v.types[256] = TokenType::kControl;
  v.types[257] = TokenType::kControl;
  v.types[258] = TokenType::kUserDefined;
  resolve_special_tokens(v);
  Tokenizer t = make(std::move(v));
  EXPECT_EQ(t.tokenize("x<|im_end|>y<|im", false, true), (Ids{byte_id('x'), 257, byte_id('y'), 256}));
  // parse_special=false: control tokens are text; user-defined ones are still recognised.
  const Ids plain = t.tokenize("<|im<tool>", false, false);
  EXPECT_EQ(plain.size(), 5u);
  EXPECT_EQ(plain.back(), 258);
  EXPECT_TRUE(t.is_eog(257));  // <|im_end|> ends a turn
  EXPECT_FALSE(t.is_eog(256));
  // Control tokens render only when asked.
  EXPECT_EQ(t.detokenize(Ids{257, byte_id('a')}, false, false), "a");
  EXPECT_EQ(t.detokenize(Ids{257, byte_id('a')}, false, true), "<|im_end|>a");
}

// A SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then `pieces` with their scores.
Vocab spm_vocab(std::vector<std::pair<std::string, float>> pieces) {
  Vocab v = default_vocab(VocabModel::kSpm);
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v.tokens.push_back(buf);
    v.types.push_back(TokenType::kByte);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  for (auto& [text, score] : pieces) {
    v.tokens.push_back(text);
    v.scores.push_back(score);
    v.types.push_back(TokenType::kNormal);
  }
  resolve_special_tokens(v);
  return v;
}

constexpr int32_t kSpmFirst = 3 + 256;  // id of the first piece

TEST(TokenizerSpm, HighestScoreMergesAndByteFallback) {
  // "▁"=259, "a"=260, "b"=261, "▁a"=262, "ab"=263.
  Tokenizer t = make(spm_vocab({{"\xE2\x96\x81", -1}, {"a", -2}, {"b", -3}, {"\xE2\x96\x81" "a", -4}, {"ab", -5}}));
  EXPECT_EQ(t.tokenize("ab", false, false), (Ids{kSpmFirst + 3, kSpmFirst + 2}));
  // "€" is not a piece: its three UTF-8 bytes come out as <0xE2> <0x82> <0xAC>.
  EXPECT_EQ(t.tokenize("a\xE2\x82\xAC", true, false), (Ids{1, kSpmFirst + 3, 3 + 0xE2, 3 + 0x82, 3 + 0xAC}));
  // A higher-scoring "ab" wins over "▁a".
  Tokenizer t2 = make(spm_vocab({{"\xE2\x96\x81", -1}, {"a", -2}, {"b", -3}, {"\xE2\x96\x81" "a", -5}, {"ab", -4}}));
  EXPECT_EQ(t2.tokenize("ab", false, false), (Ids{kSpmFirst, kSpmFirst + 4}));
}

TEST(TokenizerSpm, LeadingSpaceRules) {
  Tokenizer t = make(spm_vocab({{"\xE2\x96\x81", -1}, {"a", -2}, {"b", -3}, {"\xE2\x96\x81" "a", -4}}));
  const Ids ids = t.tokenize("a a", true, false);
  EXPECT_EQ(ids, (Ids{1, kSpmFirst + 3, kSpmFirst + 3}));
  // llama_detokenize: the first piece loses its space; a dropped BOS keeps it (llama.cpp's rule).
  EXPECT_EQ(t.detokenize(Ids(ids.begin() + 1, ids.end())), "a a");
  EXPECT_EQ(t.detokenize(ids, true), " a a");
  EXPECT_EQ(t.detokenize(ids, false, true), "<s> a a");
  // Text after a special token gets its own space prefix.
  EXPECT_EQ(t.tokenize("</s>a", false, true), (Ids{2, kSpmFirst + 3}));
}

TEST(TokenizerSpecialIds, EndOfGenerationFromMetadataAndText) {
  Vocab v = bpe_vocab({"<|endoftext|>", "<|im_end|>", "<|eot_id|>"}, {});
  v.eos = 256;
  resolve_special_tokens(v);
  EXPECT_EQ(v.eog, (Ids{256, 257, 258}));
  EXPECT_EQ(v.eot, 256);  // first end-of-turn text, as llama.cpp (when eot_token_id is absent)
  EXPECT_EQ(v.type(257), TokenType::kControl);  // overridden like llama.cpp
  v.bos = 99999;  // out of range: dropped
  resolve_special_tokens(v);
  EXPECT_EQ(v.bos, kNoToken);
  // llama.cpp's fill-in-the-middle pad, repo and file-separator markers end generation too (StarCoder's
  // <reponame> in SmolLM2's vocabulary), made control tokens; a file's fim_*_token_id names them first.
  Vocab f = bpe_vocab({"<reponame>", "<|file_sep|>", "<|fim_pad|>", "<|repo_name|>", "<reponame_x>"}, {});
  resolve_special_tokens(f);
  EXPECT_EQ(f.eog, (Ids{11, 256, 257, 258}));
  EXPECT_EQ(f.fim_rep, 256);  // the first by id of the texts
  EXPECT_EQ(f.type(256), TokenType::kControl);
  f.fim_rep = 259;
  resolve_special_tokens(f);
  EXPECT_EQ(f.eog, (Ids{11, 257, 258, 259}));
}

TEST(Utf8Stream, HoldsASplitEmoji) {
  Utf8Stream s;  // 😀 = F0 9F 98 80
  EXPECT_EQ(s.push("a\xF0"), "a");
  EXPECT_TRUE(s.pending());
  EXPECT_EQ(s.push("\x9F"), "");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_FALSE(s.pending());
  // Bytes that can never form a character become U+FFFD at once; an unfinished end at finish().
  EXPECT_EQ(s.push("\xFF" "b\xE2\x82"), "\xEF\xBF\xBD" "b");
  EXPECT_EQ(s.push("x"), "\xEF\xBF\xBDx");
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.push("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate is not UTF-8
}

TEST(Utf8Stream, ByteLevelTokensStreamAnEmoji) {
  Tokenizer t = make(bpe_vocab({}, {}));
  const Ids ids = t.tokenize("\xF0\x9F\x98\x80", false, false);
  ASSERT_EQ(ids.size(), 4u);
  Utf8Stream s;
  std::string out;
  for (int32_t id : ids) out += s.push(t.token_to_piece(id));
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
}

TEST(TokenIndex, FindsEveryTokenAndNothingElse) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 5000; ++i) tokens.push_back("t" + std::to_string(i * 7919 % 100003));
  tokens.push_back(std::string("a\0b", 3));  // bytes, not C strings
  const TokenIndex index(tokens);
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(index.find(tokens[i]), static_cast<int32_t>(i));
  EXPECT_EQ(index.find("a"), kNoToken);
  EXPECT_EQ(index.find(""), kNoToken);
  EXPECT_EQ(index.find("t100003"), kNoToken);
  EXPECT_EQ(index.repeat().again, kNoToken);
  EXPECT_EQ(TokenIndex().find("t0"), kNoToken);
}

TEST(TokenIndex, ARepeatedTextKeepsItsFirstId) {
  const std::vector<std::string> tokens = {"x", "y", "x", "z", "y"};
  const TokenIndex index(tokens);
  EXPECT_EQ(index.find("x"), 0);
  EXPECT_EQ(index.find("y"), 1);
  EXPECT_EQ(index.find("z"), 3);
  EXPECT_EQ(index.repeat().first, 0);  // the first repeat in id order: 2 repeats 0
  EXPECT_EQ(index.repeat().again, 2);
}

TEST(TokenizerBpe, VocabularyKeepsItsTokensButNotTheMergeStrings) {
  const Tokenizer t = make(bpe_vocab({"ab"}, {"a b"}));
  EXPECT_EQ(t.tokenize("ab", false, false), (Ids{256}));  // the merge still applies
  EXPECT_TRUE(t.vocab().merges.empty());
  EXPECT_EQ(t.vocab().tokens.size(), 257u);
  EXPECT_EQ(t.token_id("ab"), 256);
  EXPECT_EQ(t.token_to_piece(256), "ab");
  EXPECT_EQ(t.token_to_piece(byte_id(' ')), " ");  // rendered from the GPT-2 byte character
}

TEST(TokenizerErrors, BadVocabularies) {
  auto error_of = [](Vocab v) {
    Result<Tokenizer> t = Tokenizer::create(std::move(v), "model.gguf");
    return t.ok() ? std::string("ok") : t.error().message();
  };
  EXPECT_EQ(error_of(bpe_vocab({"ab"}, {"a b", "ab"})),
            "model.gguf: tokenizer.ggml.merges: entry 1 \"ab\" is not two tokens");
  EXPECT_EQ(error_of(bpe_vocab({"ab", "ab"}, {})),
            "model.gguf: tokenizer.ggml.tokens: entry 257 \"ab\" repeats entry 256");
  EXPECT_EQ(error_of(bpe_vocab({}, {}, "no-such-pre")),
            "model.gguf: tokenizer.ggml.pre: unknown pre-tokenizer \"no-such-pre\"");
  Vocab v = spm_vocab({});
  v.bos = kNoToken;
  EXPECT_EQ(error_of(v), "model.gguf: tokenizer.ggml.add_bos_token: is true, but tokenizer.ggml.bos_token_id is not set");
  v = spm_vocab({});
  v.scores.pop_back();
  EXPECT_EQ(error_of(v), "model.gguf: tokenizer.ggml.scores: 258 scores for 259 tokens");
}

// Writes a GGUF with the given metadata (and one tiny tensor) and loads its vocabulary.
Result<Vocab> load_from(const std::string& name, std::vector<GgufKv> kvs) {
  const std::string path = std::string(QE_TEST_TMPDIR) + "/" + name;
  GgufWriter w;
  for (GgufKv& kv : kvs) EXPECT_TRUE(w.set(kv.key, kv.value).ok());
  EXPECT_TRUE(w.add_tensor("dummy.weight", GgmlType::F32, {32}).ok());
  EXPECT_TRUE(w.open(path, true).ok());
  std::vector<std::byte> zeros(32 * sizeof(float));
  EXPECT_TRUE(w.write_tensor("dummy.weight", zeros).ok());
  EXPECT_TRUE(w.finish().ok());
  Result<GgufFile> f = GgufFile::open(path);
  if (!f) return f.error();
  return load_vocab(*f);
}

TEST(TokenizerErrors, BadMetadataNamesTheKey) {
  const std::vector<std::string> tokens = {"a", "b", "ab"};
  auto base = [&] {
    return std::vector<GgufKv>{{"tokenizer.ggml.model", GgufValue::str("gpt2")},
                               {"tokenizer.ggml.pre", GgufValue::str("smollm")},
                               {"tokenizer.ggml.tokens", GgufValue::array(tokens)}};
  };
  auto kvs = base();
  kvs.push_back({"tokenizer.ggml.merges", GgufValue::array(std::vector<std::string>{"a b"})});
  kvs.push_back({"tokenizer.ggml.eos_token_id", GgufValue::u32(2)});
  Result<Vocab> good = load_from("tok_good.gguf", kvs);
  ASSERT_TRUE(good.ok()) << good.error().message();
  EXPECT_EQ(good->eos, 2);
  EXPECT_EQ(good->bos, kNoToken);  // GPT-2's default 11 is outside this vocabulary

  kvs = base();
  Result<Vocab> no_merges = load_from("tok_nomerges.gguf", kvs);
  ASSERT_FALSE(no_merges.ok());
  EXPECT_NE(no_merges.error().message().find("tokenizer.ggml.merges: missing"), std::string::npos)
      << no_merges.error().message();

  kvs = base();
  kvs[0].value = GgufValue::str("rwkv");
  Result<Vocab> bad_model = load_from("tok_badmodel.gguf", kvs);
  ASSERT_FALSE(bad_model.ok());
  EXPECT_NE(bad_model.error().message().find("tokenizer.ggml.model: unsupported tokenizer \"rwkv\""),
            std::string::npos);

  kvs = base();
  kvs.push_back({"tokenizer.ggml.merges", GgufValue::array(std::vector<std::string>{"a b"})});
  kvs.push_back({"tokenizer.ggml.token_type", GgufValue::array(std::vector<int32_t>{1, 1})});
  Result<Vocab> short_types = load_from("tok_types.gguf", kvs);
  ASSERT_FALSE(short_types.ok());
  EXPECT_NE(short_types.error().message().find("tokenizer.ggml.token_type: 2 types for 3 tokens"),
            std::string::npos);
}

}  // namespace
}  // namespace qe::tokenizer
