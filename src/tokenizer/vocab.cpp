#include "tokenizer/vocab.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <span>

#include "formats/gguf_reader.h"
#include "tokenizer/pretokenize.h"

namespace qe::tokenizer {

namespace {

constexpr std::string_view kKeyModel = "tokenizer.ggml.model";
constexpr std::string_view kKeyPre = "tokenizer.ggml.pre";
constexpr std::string_view kKeyTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kKeyScores = "tokenizer.ggml.scores";
constexpr std::string_view kKeyTypes = "tokenizer.ggml.token_type";
constexpr std::string_view kKeyMerges = "tokenizer.ggml.merges";

// Quotes a token for an error message, short and on one line.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 40)) {
    if (c == '\n') out += "\\n";
    else if (c == '"') out += "\\\"";
    else out += c;
  }
  if (s.size() > 40) out += "...";
  return out + "\"";
}

// The end markers llama.cpp recognises by text (llama_vocab::impl::load, "find EOT token" and the EOG
// list). Models whose converters did not write eot_token_id still stop on them.
constexpr std::array<std::string_view, 11> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>",      "_<EOT>",     "[EOT]",   "<｜end▁of▁sentence｜>", "<end_of_utterance>"};
constexpr std::array<std::string_view, 22> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~["};

// The fill-in-the-middle markers llama.cpp adds to the end-of-generation tokens, by text (pad, repo name,
// file separator), when the file names none.
constexpr std::array<std::string_view, 4> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"};
constexpr std::array<std::string_view, 5> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                          "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> kFimSepTexts = {"<|file_sep|>"};

bool in(std::span<const std::string_view> list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

}  // namespace

Vocab default_vocab(VocabModel model, std::string_view pre) {
  Vocab v;
  v.model = model;
  v.pre = std::string(pre);
  if (model == VocabModel::kSpm) {
    v.bos = 1, v.eos = 2, v.unk = 0;
    v.add_bos = true, v.add_space_prefix = true;
  } else {
    v.bos = v.eos = 11;
    const PreTokenizerTraits* traits = find_pre_tokenizer(pre);
    v.add_bos = traits != nullptr && traits->add_bos;
  }
  return v;
}

void resolve_special_tokens(Vocab& v) {
  const size_t n = v.tokens.size();
  v.scores.resize(n, 0.0f);
  v.types.resize(n, TokenType::kNormal);
  for (int32_t* id : {&v.bos, &v.eos, &v.eot, &v.eom, &v.unk, &v.pad, &v.fim_pad, &v.fim_rep, &v.fim_sep}) {
    if (!v.valid_id(*id)) *id = kNoToken;
  }
  // llama.cpp walks an unordered_map here, so with several candidates its choice of eot is arbitrary;
  // we take the lowest id, which agrees whenever a vocabulary has one candidate.
  for (int32_t id = 0; id < v.size(); ++id) {
    const std::string& t = v.tokens[static_cast<size_t>(id)];
    if (v.eot == kNoToken && in(kEotTexts, t)) v.eot = id;
    if (v.eom == kNoToken && t == "<|eom_id|>") v.eom = id;
    if (v.fim_pad == kNoToken && in(kFimPadTexts, t)) v.fim_pad = id;
    if (v.fim_rep == kNoToken && in(kFimRepTexts, t)) v.fim_rep = id;
    if (v.fim_sep == kNoToken && in(kFimSepTexts, t)) v.fim_sep = id;
  }
  v.eog.clear();
  for (int32_t id = 0; id < v.size(); ++id) {
    if (in(kEogTexts, v.tokens[static_cast<size_t>(id)])) v.eog.push_back(id);
  }
  for (int32_t id : {v.eos, v.eot, v.eom, v.fim_pad, v.fim_rep, v.fim_sep}) {
    if (id != kNoToken) v.eog.push_back(id);
  }
  std::sort(v.eog.begin(), v.eog.end());
  v.eog.erase(std::unique(v.eog.begin(), v.eog.end()), v.eog.end());
  for (int32_t id : {v.eot, v.eom, v.fim_pad, v.fim_rep, v.fim_sep}) {
    if (id != kNoToken) v.types[static_cast<size_t>(id)] = TokenType::kControl;
  }
  for (int32_t id : v.eog) {
    // A control-looking token that the converter left normal: llama.cpp makes it control.
    if (in(kEogTexts, v.tokens[static_cast<size_t>(id)])) v.types[static_cast<size_t>(id)] = TokenType::kControl;
  }
}

Result<Vocab> load_vocab(const GgufFile& f, std::vector<std::string>* warnings) {
  const std::string& file = f.name();
  auto err = [&](std::string_view key, std::string reason) {
    return Error{file, std::string(key), std::move(reason)};
  };

  Result<std::string> model_name = f.get_string(kKeyModel);
  if (!model_name) return model_name.error();
  std::string pre;
  if (f.has(kKeyPre)) {
    Result<std::string> p = f.get_string(kKeyPre);
    if (!p) return p.error();
    pre = *p;
  }

  VocabModel model;
  if (*model_name == "llama") {
    model = VocabModel::kSpm;
  } else if (*model_name == "gpt2") {
    model = VocabModel::kBpe;
    if (find_pre_tokenizer(pre) == nullptr) {
      return err(kKeyPre, fmt::format("unknown pre-tokenizer {}", quoted(pre)));
    }
  } else {
    return err(kKeyModel, fmt::format("unsupported tokenizer {} (expected \"llama\" or \"gpt2\")",
                                      quoted(*model_name)));
  }
  Vocab v = default_vocab(model, pre);
  if (model == VocabModel::kSpm) v.pre.clear();  // llama.cpp ignores pre for SentencePiece

  // ---- Tokens, scores, types.
  Result<std::span<const std::string>> tokens = f.get_string_array(kKeyTokens);
  if (!tokens) return tokens.error();
  if (tokens->empty()) return err(kKeyTokens, "no tokens");
  if (tokens->size() > static_cast<size_t>(INT32_MAX)) return err(kKeyTokens, "too many tokens");
  v.tokens.assign(tokens->begin(), tokens->end());
  const size_t n = v.tokens.size();
  for (size_t i = 0; i < n; ++i) {
    if (v.tokens[i].empty()) v.tokens[i] = fmt::format("[EMPTY_{}]", i);  // as llama.cpp
  }

  if (const GgufValue* sv = f.find(kKeyScores)) {
    const GgufArray* a = sv->get<GgufArray>();
    const std::vector<float>* fs = a ? a->get<float>() : nullptr;
    const std::vector<int32_t>* is = a ? a->get<int32_t>() : nullptr;
    if (fs == nullptr && is == nullptr) {
      return err(kKeyScores, fmt::format("type is {}, expected array[float32]", sv->type_name()));
    }
    const size_t count = fs ? fs->size() : is->size();
    if (count < n) return err(kKeyScores, fmt::format("{} scores for {} tokens", count, n));
    v.scores.resize(n);
    for (size_t i = 0; i < n; ++i) v.scores[i] = fs ? (*fs)[i] : static_cast<float>((*is)[i]);
  }
  if (f.has(kKeyTypes)) {
    Result<std::span<const int32_t>> types = f.get_i32_array(kKeyTypes);
    if (!types) return types.error();
    if (types->size() < n) return err(kKeyTypes, fmt::format("{} types for {} tokens", types->size(), n));
    v.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = (*types)[i];
      v.types[i] = t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kUndefined;
    }
  }

  // ---- Merges (BPE).
  if (model == VocabModel::kBpe) {
    Result<std::span<const std::string>> merges = f.get_string_array(kKeyMerges);
    if (!merges) return merges.error();
    v.merges.assign(merges->begin(), merges->end());
  }

  // ---- Special ids and flags. A present id outside the vocabulary keeps the default, as llama.cpp
  // (llama_vocab::impl::load: "bad special token ... using default id"), and says so.
  struct IdKey {
    std::string_view key;
    int32_t* id;
  };
  for (const IdKey& k :
       {IdKey{"tokenizer.ggml.bos_token_id", &v.bos}, IdKey{"tokenizer.ggml.eos_token_id", &v.eos},
        IdKey{"tokenizer.ggml.eot_token_id", &v.eot}, IdKey{"tokenizer.ggml.eom_token_id", &v.eom},
        IdKey{"tokenizer.ggml.unknown_token_id", &v.unk}, IdKey{"tokenizer.ggml.padding_token_id", &v.pad},
        IdKey{"tokenizer.ggml.fim_pad_token_id", &v.fim_pad},
        IdKey{"tokenizer.ggml.fim_rep_token_id", &v.fim_rep},
        IdKey{"tokenizer.ggml.fim_sep_token_id", &v.fim_sep}}) {
    if (!v.valid_id(*k.id)) *k.id = kNoToken;
    if (!f.has(k.key)) continue;
    Result<int64_t> id = f.get_int(k.key);
    if (!id) return id.error();
    if (*id >= 0 && *id < static_cast<int64_t>(n)) {
      *k.id = static_cast<int32_t>(*id);
    } else if (warnings != nullptr) {
      warnings->push_back(fmt::format("{}: {} = {} is outside the vocabulary ({} tokens); {}", file, k.key, *id, n,
                                      *k.id == kNoToken ? "left unset" : fmt::format("using the default {}", *k.id)));
    }
  }
  struct FlagKey {
    std::string_view key;
    bool* flag;
  };
  for (const FlagKey& k : {FlagKey{"tokenizer.ggml.add_bos_token", &v.add_bos},
                           FlagKey{"tokenizer.ggml.add_eos_token", &v.add_eos},
                           FlagKey{"tokenizer.ggml.add_space_prefix", &v.add_space_prefix}}) {
    if (!f.has(k.key)) continue;
    Result<bool> b = f.get_bool(k.key);
    if (!b) return b.error();
    *k.flag = *b;
  }

  resolve_special_tokens(v);
  if (Status s = validate_vocab(v, file); !s) return s.error();
  return v;
}

TokenIndex::TokenIndex(std::span<const std::string> tokens) : tokens_(tokens) {
  size_t n_slots = 16;
  while (n_slots < 2 * tokens.size()) n_slots *= 2;
  slots_.assign(n_slots, kNoToken);
  mask_ = n_slots - 1;
  for (size_t id = 0; id < tokens.size(); ++id) {
    for (size_t s = hash(tokens[id]) & mask_;; s = (s + 1) & mask_) {
      int32_t& slot = slots_[s];
      if (slot == kNoToken) {
        slot = static_cast<int32_t>(id);
        break;
      }
      if (tokens[static_cast<size_t>(slot)] == tokens[id]) {
        if (repeat_.again == kNoToken) repeat_ = Repeat{slot, static_cast<int32_t>(id)};
        break;
      }
    }
  }
}

int32_t TokenIndex::find(std::string_view text) const {
  if (slots_.empty()) return kNoToken;
  for (size_t s = hash(text) & mask_;; s = (s + 1) & mask_) {
    const int32_t id = slots_[s];
    if (id == kNoToken || tokens_[static_cast<size_t>(id)] == text) return id;
  }
}

Status validate_vocab(const Vocab& v, std::string_view file) {
  auto err = [&](std::string_view key, std::string reason) {
    return Error{std::string(file), std::string(key), std::move(reason)};
  };
  const size_t n = v.tokens.size();
  if (n == 0) return err(kKeyTokens, "no tokens");
  if (v.scores.size() != n) return err(kKeyScores, fmt::format("{} scores for {} tokens", v.scores.size(), n));
  if (v.types.size() != n) return err(kKeyTypes, fmt::format("{} types for {} tokens", v.types.size(), n));
  for (size_t i = 0; i < n; ++i) {
    if (v.tokens[i].empty()) return err(kKeyTokens, fmt::format("entry {} is empty", i));
  }
  if (const TokenIndex::Repeat r = TokenIndex(v.tokens).repeat(); r.again != kNoToken) {
    return err(kKeyTokens, fmt::format("entry {} {} repeats entry {}", r.again,
                                       quoted(v.tokens[static_cast<size_t>(r.again)]), r.first));
  }
  if (v.model == VocabModel::kBpe) {
    if (find_pre_tokenizer(v.pre) == nullptr) {
      return err(kKeyPre, fmt::format("unknown pre-tokenizer {}", quoted(v.pre)));
    }
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos || sp + 1 >= m.size() || m.find(' ', sp + 1) != std::string::npos) {
        return err(kKeyMerges, fmt::format("entry {} {} is not two tokens", i, quoted(m)));
      }
    }
  }
  if (v.add_bos && v.bos == kNoToken) {
    return err("tokenizer.ggml.add_bos_token", "is true, but tokenizer.ggml.bos_token_id is not set");
  }
  if (v.add_eos && v.eos == kNoToken) {
    return err("tokenizer.ggml.add_eos_token", "is true, but tokenizer.ggml.eos_token_id is not set");
  }
  return Status::Ok();
}

}  // namespace qe::tokenizer
