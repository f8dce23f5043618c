// GGUF `tokenizer.*` -> Hugging Face tokenizer.json + tokenizer_config.json, built so that HF
// `tokenizers` gives the ids our runtime tokenizer (model/tokenizer.h) gives: it reads the vocabulary
// through load_vocab, the same resolution the runtime uses, and writes what the runtime does in HF's terms.
#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <unordered_map>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/hf_tokenizer_pre.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace qe::tokenizer {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

bool is_added(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

Json added_token(int32_t id, const std::string& content, bool special) {
  return Json{{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", false}, {"special", special}};
}

// TemplateProcessing that adds BOS in front and/or EOS at the end, as HF's Llama tokenizers write it.
Json post_processor(const Vocab& v) {
  const bool bos = v.add_bos && v.bos != kNoToken, eos = v.add_eos && v.eos != kNoToken;
  if (!bos && !eos) return nullptr;
  auto special = [](const std::string& t, int type_id) { return Json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}}; };
  auto seq = [](const char* id, int type_id) { return Json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
  const std::string& bt = bos ? v.tokens[static_cast<size_t>(v.bos)] : std::string();
  const std::string& et = eos ? v.tokens[static_cast<size_t>(v.eos)] : std::string();
  Json single = Json::array(), pair = Json::array(), specials = Json::object();
  if (bos) single.push_back(special(bt, 0)), pair.push_back(special(bt, 0));
  single.push_back(seq("A", 0)), pair.push_back(seq("A", 0));
  if (eos) single.push_back(special(et, 0)), pair.push_back(special(et, 0));
  if (bos) pair.push_back(special(bt, 1));
  pair.push_back(seq("B", 1));
  if (eos) pair.push_back(special(et, 1));
  if (bos) specials[bt] = Json{{"id", bt}, {"ids", {v.bos}}, {"tokens", {bt}}};
  if (eos) specials[et] = Json{{"id", et}, {"ids", {v.eos}}, {"tokens", {et}}};
  return Json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

// Builds a JSON object key by key in O(1) each where `json[key] = value` on an ordered_json scans all
// keys so far (O(n^2) for a vocabulary). A repeated key keeps its first place and takes the last value,
// as operator[] would.
class ObjectBuilder {
 public:
  void set(const std::string& key, Json value) {
    auto& o = obj_.get_ref<Json::object_t&>();
    if (auto [it, fresh] = index_.try_emplace(key, o.size()); !fresh) {
      std::next(o.begin(), static_cast<std::ptrdiff_t>(it->second))->second = std::move(value);
      return;
    }
    o.emplace_back(key, std::move(value));
  }
  Json take() { return std::move(obj_); }

 private:
  Json obj_ = Json::object();
  std::unordered_map<std::string, size_t> index_;
};

// Code point boundaries of `s` (byte offsets, the end included), so a split never cuts a character.
std::vector<size_t> char_bounds(std::string_view s) {
  std::vector<size_t> b{0};
  for (size_t i = 0; i < s.size();) {
    i += std::min<size_t>(utf8_seq_len(static_cast<uint8_t>(s[i])), s.size() - i);
    b.push_back(i);
  }
  return b;
}

// SentencePiece scores -> BPE merges, as transformers' SentencePieceExtractor does for Llama: every
// split of every piece into two pieces, ranked by the merged piece's score (highest first; ties keep
// vocabulary order, then the parts' ids). HF's BPE then merges in the order our score-driven SPM does.
Json spm_merges(const Vocab& v, const TokenIndex& index) {
  struct M {
    int32_t l, r;
    float score;
  };
  // A split can only match where both parts have the length of some token; looking up just those
  // splits keeps one long token from costing O(length^2) in hashing.
  size_t longest = 0;
  for (const std::string& t : v.tokens) longest = std::max(longest, t.size());
  std::vector<bool> token_length(longest + 1, false);
  for (const std::string& t : v.tokens) token_length[t.size()] = true;
  std::vector<M> merges;
  for (int32_t id = 0; id < v.size(); ++id) {
    const std::string& t = v.tokens[static_cast<size_t>(id)];
    const std::vector<size_t> b = char_bounds(t);
    std::vector<M> local;
    for (size_t k = 1; k + 1 < b.size(); ++k) {
      if (!token_length[b[k]] || !token_length[t.size() - b[k]]) continue;
      const int32_t l = index.find(std::string_view(t).substr(0, b[k]));
      const int32_t r = index.find(std::string_view(t).substr(b[k]));
      if (l >= 0 && r >= 0) local.push_back({l, r, v.scores[static_cast<size_t>(id)]});
    }
    std::sort(local.begin(), local.end(), [](const M& a, const M& c) { return a.l != c.l ? a.l < c.l : a.r < c.r; });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const M& a, const M& c) { return a.score > c.score; });
  Json out = Json::array();
  for (const M& m : merges) out.push_back(Json::array({v.tokens[static_cast<size_t>(m.l)], v.tokens[static_cast<size_t>(m.r)]}));
  return out;
}

// GGUF merges as HF pairs, keeping what our BPE encoder keeps: both parts and the result are tokens,
// and the first rank of a repeated pair (HF would let a later duplicate win).
Json bpe_merges(const Vocab& v, const TokenIndex& index) {
  Json out = Json::array();
  std::set<std::pair<int32_t, int32_t>> seen;
  std::string joined;
  for (const std::string& m : v.merges) {
    const size_t sp = m.find(' ', 1);
    const std::string_view l = std::string_view(m).substr(0, sp), r = std::string_view(m).substr(sp + 1);
    joined.assign(l);
    joined.append(r);
    const int32_t li = index.find(l), ri = index.find(r);
    if (li < 0 || ri < 0 || index.find(joined) < 0 || !seen.insert({li, ri}).second) continue;
    out.push_back(Json::array({std::string(l), std::string(r)}));
  }
  return out;
}

}  // namespace

Result<HfTokenizerFiles> gguf_tokenizer_to_hf(const GgufFile& gguf) {
  Result<Vocab> loaded = load_vocab(gguf);
  if (!loaded) return loaded.error();
  const Vocab& v = *loaded;
  // JSON holds UTF-8 only: a token that is not would come out changed (U+FFFD), maybe as a duplicate.
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (const size_t ok = utf8_valid_prefix(v.tokens[i]); ok < v.tokens[i].size())
      return Error{gguf.name(), "tokenizer.ggml.tokens",
                   fmt::format("entry {} is not valid UTF-8 (at byte {}); tokenizer.json cannot hold it", i, ok)};
  }
  const bool spm = v.model == VocabModel::kSpm;
  const PreTokenizerTraits* traits = spm ? nullptr : find_pre_tokenizer(v.pre);

  const TokenIndex index(v.tokens);

  HfTokenizerFiles out;
  Json& tj = out.tokenizer_json;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  Json added = Json::array();
  ObjectBuilder decoder_map;
  for (int32_t id = 0; id < v.size(); ++id) {
    const TokenType t = v.type(id);
    if (!is_added(t)) continue;
    const std::string& text = v.tokens[static_cast<size_t>(id)];
    added.push_back(added_token(id, text, t != TokenType::kUserDefined));
    decoder_map.set(std::to_string(id), Json{{"content", text}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                                           {"single_word", false}, {"special", t != TokenType::kUserDefined}});
  }
  tj["added_tokens"] = std::move(added);

  ObjectBuilder vocab_builder;
  for (int32_t id = 0; id < v.size(); ++id) vocab_builder.set(v.tokens[static_cast<size_t>(id)], id);
  Json vocab = vocab_builder.take();

  if (spm) {
    // Llama 2's tokenizer.json (LlamaTokenizerFast, legacy): a space before every text segment (HF splits
    // out added tokens first, so also after each of them, as llama.cpp does), spaces as ▁, BPE with byte
    // fallback; decoding undoes it.
    Json replace = Json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", std::string(kSpmSpace)}};
    tj["normalizer"] = v.add_space_prefix
                           ? Json{{"type", "Sequence"},
                                  {"normalizers", Json::array({Json{{"type", "Prepend"}, {"prepend", std::string(kSpmSpace)}}, replace})}}
                           : replace;
    tj["pre_tokenizer"] = nullptr;
    tj["post_processor"] = post_processor(v);
    Json decoders = Json::array({Json{{"type", "Replace"}, {"pattern", {{"String", std::string(kSpmSpace)}}}, {"content", " "}},
                                 Json{{"type", "ByteFallback"}}, Json{{"type", "Fuse"}}});
    if (v.add_space_prefix) decoders.push_back(Json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = Json{{"type", "Sequence"}, {"decoders", std::move(decoders)}};
    tj["model"] = Json{{"type", "BPE"},
                       {"dropout", nullptr},
                       {"unk_token", v.unk != kNoToken ? Json(v.tokens[static_cast<size_t>(v.unk)]) : Json(nullptr)},
                       {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr},
                       {"fuse_unk", true},
                       {"byte_fallback", true},
                       {"ignore_merges", false},
                       {"vocab", std::move(vocab)},
                       {"merges", spm_merges(v, index)}};
  } else {
    std::optional<Json> pre = hf_pre_tokenizer_for(v.pre);
    QE_CHECK(pre.has_value());  // load_vocab accepted v.pre, so the runtime knows it
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = std::move(*pre);
    tj["post_processor"] = post_processor(v);
    tj["decoder"] = Json{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    tj["model"] = Json{{"type", "BPE"},
                       {"dropout", nullptr},
                       {"unk_token", nullptr},
                       {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr},
                       {"fuse_unk", false},
                       {"byte_fallback", false},
                       {"ignore_merges", traits->ignore_merges},
                       {"vocab", std::move(vocab)},
                       {"merges", bpe_merges(v, index)}};
  }

  Json& tc = out.tokenizer_config_json;
  tc["add_bos_token"] = v.add_bos;
  tc["add_eos_token"] = v.add_eos;
  tc["added_tokens_decoder"] = decoder_map.take();
  auto name = [&](int32_t id) { return id != kNoToken ? Json(v.tokens[static_cast<size_t>(id)]) : Json(nullptr); };
  tc["bos_token"] = name(v.bos);
  tc["eos_token"] = name(v.eos);
  tc["unk_token"] = name(v.unk);
  tc["pad_token"] = name(v.pad);
  if (gguf.has("tokenizer.chat_template")) {
    Result<std::string> t = gguf.get_string("tokenizer.chat_template");
    if (!t) return t.error();
    tc["chat_template"] = *t;
  }
  tc["clean_up_tokenization_spaces"] = traits != nullptr && traits->clean_spaces;
  if (gguf.has("general.architecture")) {
    Result<std::string> arch = gguf.get_string("general.architecture");
    if (!arch) return arch.error();
    const std::string key = *arch + ".context_length";
    if (gguf.has(key)) {
      Result<int64_t> ctx = gguf.get_int(key);
      if (!ctx) return ctx.error();
      tc["model_max_length"] = *ctx;
    }
  }
  if (spm) tc["legacy"] = true;  // the ▁ after special tokens, as llama.cpp tokenizes
  tc["tokenizer_class"] = spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast";
  return out;
}

}  // namespace qe::tokenizer
