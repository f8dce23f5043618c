// Hugging Face tokenizer files -> GGUF `tokenizer.*` metadata, following llama.cpp's
// convert_hf_to_gguf.py (get_vocab_base, _create_vocab_sentencepiece) and gguf-py's SpecialVocab.
// Where we differ on purpose, the comment says why.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "formats/safetensors_json.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/hf_tokenizer_pre.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

namespace qe::tokenizer {

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

// Builds a new string rather than replacing in place, which moves the tail each time: O(n^2) on a
// hostile token of a million spaces.
std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  size_t pos = s.find(from);
  if (pos == std::string::npos) return s;
  std::string out;
  out.reserve(s.size());
  size_t done = 0;
  for (; pos != std::string::npos; pos = s.find(from, done)) {
    out.append(s, done, pos - done).append(to);
    done = pos + from.size();
  }
  return out.append(s, done);
}

// One file of the directory: its path for messages and its JSON (null when the file is absent).
struct JsonFile {
  std::string path;
  Json json;  // null when absent
  bool present() const { return !json.is_null(); }
  Error error(std::string field, std::string reason) const { return Error{path, std::move(field), std::move(reason)}; }
};

Result<std::optional<std::string>> read_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::string>();
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path, "", "cannot open"};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{path, "", "read error"};
  return std::optional<std::string>(ss.str());
}

Result<JsonFile> parse_json_file(const std::string& dir, std::string_view name, const std::optional<std::string>& text) {
  JsonFile f{dir + "/" + std::string(name), nullptr};
  if (!text) return f;
  Result<Json> j = parse_ordered_json_strict(*text, f.path, "JSON");
  if (!j) return j.error();
  if (!j->is_object()) return f.error("", "top level is not a JSON object");
  f.json = std::move(*j);
  return f;
}

// A field that must have one JSON type when present.
bool wrong_type(const Json& obj, std::string_view key, Json::value_t want) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return false;
  if (want == Json::value_t::number_integer) return !it->is_number_integer();
  return it->type() != want;
}

// gguf-py's TokenType / llama.h's llama_token_type.
enum : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// convert_hf_to_gguf.py's does_token_look_special: added tokens some models forget to mark special.
bool looks_special(std::string_view t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (t.starts_with("<|") && t.ends_with("|>") && t.size() >= 4) return true;
  if (t.starts_with("<\xEF\xBD\x9C") && t.ends_with("\xEF\xBD\x9C>") && t.size() >= 8) return true;  // <｜ ｜>
  return t.starts_with("<unused") && t.ends_with(">");
}

struct Added {
  int64_t id;
  std::string content;
  bool special;
};

// tokenizer.json's added_tokens (also valid shape for nothing: an absent list is empty).
Result<std::vector<Added>> read_added_tokens(const JsonFile& tj) {
  std::vector<Added> out;
  if (!tj.present() || !tj.json.contains("added_tokens") || tj.json["added_tokens"].is_null()) return out;
  const Json& list = tj.json["added_tokens"];
  if (!list.is_array()) return tj.error("added_tokens", "is not an array");
  std::map<std::string, int64_t> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& e = list[i];
    const std::string field = fmt::format("added_tokens[{}]", i);
    if (!e.is_object()) return tj.error(field, "is not an object");
    if (!e.contains("id") || !e["id"].is_number_integer()) return tj.error(field + ".id", "missing or not an integer");
    if (!e.contains("content") || !e["content"].is_string()) return tj.error(field + ".content", "missing or not a string");
    if (wrong_type(e, "special", Json::value_t::boolean)) return tj.error(field + ".special", "is not a boolean");
    Added a{e["id"].get<int64_t>(), e["content"].get<std::string>(), e.value("special", false)};
    if (a.id < 0 || a.id >= INT32_MAX) return tj.error(field + ".id", fmt::format("{} is out of range", a.id));
    if (a.content.empty()) return tj.error(field + ".content", "is empty");
    if (auto [it, fresh] = seen.emplace(a.content, a.id); !fresh && it->second != a.id) {
      return tj.error(field, fmt::format("token \"{}\" is added twice (ids {} and {})", a.content, it->second, a.id));
    }
    out.push_back(std::move(a));
  }
  return out;
}

// config.json's vocab_size (or text_config.vocab_size): the number of rows of the embedding, which
// llama.cpp pads the token list to.
Result<std::optional<int64_t>> config_vocab_size(const JsonFile& cfg) {
  if (!cfg.present()) return std::optional<int64_t>();
  for (const char* where : {"", "text_config"}) {
    const Json* obj = &cfg.json;
    if (*where) {
      auto it = cfg.json.find(where);
      if (it == cfg.json.end() || !it->is_object()) continue;
      obj = &*it;
    }
    auto it = obj->find("vocab_size");
    if (it == obj->end() || it->is_null()) continue;
    const std::string field = *where ? std::string(where) + ".vocab_size" : "vocab_size";
    if (!it->is_number_integer()) return cfg.error(field, "is not an integer");
    const int64_t n = it->get<int64_t>();
    if (n <= 0 || n >= INT32_MAX) return cfg.error(field, fmt::format("{} is out of range", n));
    return std::optional<int64_t>(n);
  }
  return std::optional<int64_t>();
}

// Ids without a token become [PAD{id}] placeholders. Models pad the embedding to a round size (Qwen2:
// 290 of 151,936 rows; tiny test models: a few thousand), never to more than the real tokens plus 64k;
// the cap keeps a few bytes of JSON from asking for billions of strings.
bool too_much_padding(size_t real, int64_t n) {
  return n > static_cast<int64_t>(2 * real + 65536);
}

// The vocabulary being built, id by id.
struct Tok {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;  // SPM only
  std::vector<std::string> merges;
};

// ---- Special tokens and flags (gguf-py SpecialVocab, plus fallbacks llama.cpp does not have).
struct Specials {
  // bos, eos, unk, sep, pad, cls, mask, as SpecialVocab orders them.
  std::vector<std::pair<std::string, int64_t>> ids;
  std::optional<bool> add_bos, add_eos;
  bool has(std::string_view typ) const {
    return std::any_of(ids.begin(), ids.end(), [&](const auto& p) { return p.first == typ; });
  }
  std::optional<int64_t> get(std::string_view typ) const {
    for (const auto& p : ids) {
      if (p.first == typ) return p.second;
    }
    return std::nullopt;
  }
};

constexpr std::array<std::string_view, 7> kSpecialTypes = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};

std::optional<std::string> token_name(const Json& cfg, std::string_view typ) {
  auto it = cfg.find(std::string(typ) + "_token");
  if (it == cfg.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

// SpecialVocab._set_special_token: first one wins; an id past the vocabulary is dropped with a warning.
Status set_special(Specials& s, std::string_view typ, int64_t id, size_t n_vocab, const std::string& from,
                   std::vector<std::string>& warnings) {
  if (s.has(typ)) return Status::Ok();
  if (id < 0) return Error{from, std::string(typ) + "_token_id", fmt::format("{} is negative", id)};
  if (static_cast<uint64_t>(id) >= n_vocab) {
    warnings.push_back(fmt::format("{}: {}_token_id {} is past the vocabulary ({} tokens); ignored", from, typ, id, n_vocab));
    return Status::Ok();
  }
  s.ids.emplace_back(std::string(typ), id);
  return Status::Ok();
}

Result<Specials> read_specials(const JsonFile& tj, const JsonFile& tc, const JsonFile& cfg, const JsonFile& gen,
                               const std::vector<Added>& added, const Tok& tok, std::vector<std::string>& warnings) {
  Specials s;
  const size_t n = tok.tokens.size();
  Json config = tc.present() ? tc.json : Json::object();
  if (!token_name(config, "bos") && token_name(config, "cls")) config["bos_token"] = *token_name(config, "cls");
  if (!token_name(config, "eos") && token_name(config, "sep")) config["eos_token"] = *token_name(config, "sep");

  // tokenizer.json's post_processor says whether HF adds BOS/EOS (SpecialVocab's "crude parsing").
  if (tj.present() && tj.json.contains("post_processor") && tj.json["post_processor"].is_object()) {
    const Json& pp = tj.json["post_processor"];
    Json procs = pp.contains("processors") && pp["processors"].is_array() ? pp["processors"] : Json::array({pp});
    for (const Json& p : procs) {
      if (!p.is_object()) continue;
      const std::string type = p.value("type", std::string());
      if (type == "RobertaProcessing") {
        s.add_bos = true, s.add_eos = true;
      } else if (type == "TemplateProcessing" && p.contains("single") && p["single"].is_array() && p["single"].size() > 1) {
        const Json& single = p["single"];
        auto special_id = [](const Json& e) -> std::optional<std::string> {
          if (e.is_object() && e.contains("SpecialToken") && e["SpecialToken"].is_object() &&
              e["SpecialToken"].contains("id") && e["SpecialToken"]["id"].is_string()) {
            return e["SpecialToken"]["id"].get<std::string>();
          }
          return std::nullopt;
        };
        if (auto first = special_id(single.front())) {
          if (!token_name(config, "bos")) config["bos_token"] = *first;
          s.add_bos = *first == token_name(config, "bos") || *first == token_name(config, "cls");
        }
        if (auto last = special_id(single.back())) {
          if (!token_name(config, "eos")) config["eos_token"] = *last;
          s.add_eos = *last == token_name(config, "eos");
        }
      }
    }
  }
  if (tc.present()) {
    for (std::string_view typ : kSpecialTypes) {
      const std::string key = "add_" + std::string(typ) + "_token";
      auto it = tc.json.find(key);
      if (it == tc.json.end() || !it->is_boolean()) continue;
      if (typ == "bos") s.add_bos = it->get<bool>();
      if (typ == "eos") s.add_eos = it->get<bool>();
    }
  }

  // 1. tokenizer_config.json names, looked up in tokenizer.json's added_tokens (SpecialVocab).
  for (std::string_view typ : kSpecialTypes) {
    std::optional<std::string> name = token_name(config, typ);
    if (!name) continue;
    for (const Added& a : added) {
      if (a.content == *name) {
        if (Status st = set_special(s, typ, a.id, n, tc.path, warnings); !st) return st.error();
        break;
      }
    }
  }
  // 2. config.json *_token_id (SpecialVocab._try_load_from_config_json); a list is skipped there.
  auto from_ids = [&](const JsonFile& f, bool lists) -> Status {
    if (!f.present()) return Status::Ok();
    for (std::string_view typ : kSpecialTypes) {
      const std::string key = std::string(typ) + "_token_id";
      const Json* v = nullptr;
      if (auto it = f.json.find(key); it != f.json.end() && !it->is_null()) v = &*it;
      else if (auto tcfg = f.json.find("text_config"); tcfg != f.json.end() && tcfg->is_object() && tcfg->contains(key)) v = &(*tcfg)[key];
      if (v == nullptr || v->is_null()) continue;
      if (v->is_number_integer()) {
        if (Status st = set_special(s, typ, v->get<int64_t>(), n, f.path, warnings); !st) return st;
      } else if (lists && v->is_array() && !v->empty() && (*v)[0].is_number_integer()) {
        // generation_config.json lists every id that ends generation (Llama 3.1: <|end_of_text|>,
        // <|eom_id|>, <|eot_id|>); GGUF holds one eos, the runtime finds the others by their text.
        if (Status st = set_special(s, typ, (*v)[0].get<int64_t>(), n, f.path, warnings); !st) return st;
        if (v->size() > 1) {
          warnings.push_back(fmt::format("{}: {} lists {} ids; {} is written as tokenizer.ggml.{}_token_id, the others "
                                         "end generation only if their text is a known end-of-turn token",
                                         f.path, key, v->size(), (*v)[0].get<int64_t>(), typ));
        }
      } else if (!v->is_array()) {
        return f.error(key, fmt::format("is {}, expected an integer", v->type_name()));
      }
    }
    return Status::Ok();
  };
  if (Status st = from_ids(cfg, false); !st) return st.error();
  // 3. A name that is in the vocabulary but not an added token (a directory with only
  //    tokenizer.model), then generation_config.json: llama.cpp reads neither, but both say the same
  //    thing whenever it finds nothing.
  std::map<std::string_view, size_t> index;
  for (size_t i = 0; i < n; ++i) index.emplace(tok.tokens[i], i);
  for (std::string_view typ : kSpecialTypes) {
    std::optional<std::string> name = token_name(config, typ);
    if (!name) continue;
    if (auto it = index.find(*name); it != index.end()) {
      if (Status st = set_special(s, typ, static_cast<int64_t>(it->second), n, tc.path, warnings); !st) return st.error();
    }
  }
  if (Status st = from_ids(gen, true); !st) return st.error();
  return s;
}

// ---- Chat template(s): tokenizer_config.json, else chat_template.jinja, else chat_template.json;
// a list of {name, template} is written the way gguf-py's add_chat_template does.
Status add_chat_templates(const HfTokenizerSources& src, const JsonFile& tc, std::vector<GgufKv>& kvs) {
  Json value;
  std::string from = tc.path;
  if (tc.present() && tc.json.contains("chat_template")) value = tc.json["chat_template"];
  if (value.is_null()) {
    if (src.chat_template_jinja) {
      value = *src.chat_template_jinja;
    } else {
      Result<JsonFile> ct = parse_json_file(src.dir, "chat_template.json", src.chat_template_json);
      if (!ct) return ct.error();
      if (ct->present() && ct->json.contains("chat_template")) value = ct->json["chat_template"], from = ct->path;
    }
  }
  if (value.is_null()) return Status::Ok();
  if (value.is_string()) {
    kvs.push_back({"tokenizer.chat_template", GgufValue::str(value.get<std::string>())});
    return Status::Ok();
  }
  if (!value.is_array()) return Error{from, "chat_template", "is neither a string nor a list of {name, template}"};
  std::optional<std::string> def;
  std::set<std::string> names;
  std::vector<GgufKv> named;
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& e = value[i];
    if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) {
      return Error{from, fmt::format("chat_template[{}]", i), "is not an object with a string \"template\""};
    }
    std::string name = e.value("name", std::string());
    for (char& c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';  // as gguf-py: keys stay plain
    }
    if (name.empty()) continue;
    if (name == "default") def = e["template"].get<std::string>();
    else if (names.insert(name).second) named.push_back({"tokenizer.chat_template." + name, GgufValue::str(e["template"].get<std::string>())});
  }
  for (GgufKv& kv : named) kvs.push_back(std::move(kv));
  if (!names.empty()) kvs.push_back({"tokenizer.chat_templates", GgufValue::array(std::vector<std::string>(names.begin(), names.end()))});
  if (def) kvs.push_back({"tokenizer.chat_template", GgufValue::str(*def)});
  return Status::Ok();
}

// ---- Byte-level BPE (tokenizer.json), llama.cpp's get_vocab_base + SpecialVocab(load_merges=True).

Result<std::string> merge_string(const Json& m, const JsonFile& tj, size_t i) {
  const std::string field = fmt::format("model.merges[{}]", i);
  if (m.is_string()) {
    std::string s = m.get<std::string>();
    const size_t sp = s.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos) {
      return tj.error(field, fmt::format("\"{}\" is not two tokens separated by one space", s));
    }
    return s;
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    // The list form (transformers >= 4.45) may hold spaces; gguf-py writes them as U+0120 ('Ġ'), the
    // byte-level character for a space, so the GGUF keeps "left right" with one separator.
    auto enc = [](std::string s) { return replace_all(std::move(s), " ", "\xC4\xA0"); };
    const std::string a = enc(m[0].get<std::string>()), b = enc(m[1].get<std::string>());
    if (a.empty() || b.empty()) return tj.error(field, "has an empty part");
    return a + " " + b;
  }
  return tj.error(field, "is neither \"a b\" nor [\"a\", \"b\"]");
}

// Fills tok.tokens/types from model.vocab and added_tokens, padded to vocab_size with [PAD{id}].
Status build_bpe_tokens(const JsonFile& tj, const std::vector<Added>& added, std::optional<int64_t> vocab_size,
                        const JsonFile& cfg, bool spm_flavour, Tok& tok) {
  const Json& model = tj.json["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) return tj.error("model.vocab", "missing or not an object");
  // HF's get_vocab(): the model's vocabulary, then the added tokens over it (content -> id).
  std::map<std::string, int64_t> by_text;
  std::map<int64_t, std::string> by_id;
  int64_t max_id = -1;
  for (const auto& [text, idv] : model["vocab"].items()) {
    if (!idv.is_number_integer()) return tj.error("model.vocab." + text, "id is not an integer");
    const int64_t id = idv.get<int64_t>();
    if (id < 0 || id >= INT32_MAX) return tj.error("model.vocab." + text, fmt::format("id {} is out of range", id));
    if (auto [it, fresh] = by_id.emplace(id, text); !fresh) {
      return tj.error("model.vocab", fmt::format("id {} is used by both \"{}\" and \"{}\"", id, it->second, text));
    }
    by_text[text] = id;
    max_id = std::max(max_id, id);
  }
  std::set<int64_t> added_special, added_plain;
  for (const Added& a : added) {
    if (auto it = by_text.find(a.content); it != by_text.end() && it->second != a.id) by_id.erase(it->second);
    by_text[a.content] = a.id;
    by_id[a.id] = a.content;
    (a.special ? added_special : added_plain).insert(a.id);
    max_id = std::max(max_id, a.id);
  }
  if (max_id < 0) return tj.error("model.vocab", "no tokens");
  if (too_much_padding(by_id.size(), max_id + 1)) {
    return tj.error("model.vocab", fmt::format("id {} is far past the {} tokens (ids up to it would be placeholders)",
                                               max_id, by_id.size()));
  }
  int64_t n = max_id + 1;
  if (vocab_size) {
    if (max_id >= *vocab_size) {
      return cfg.error("vocab_size", fmt::format("{} is too small: tokenizer.json has id {}", *vocab_size, max_id));
    }
    if (too_much_padding(by_id.size(), *vocab_size)) {
      return cfg.error("vocab_size", fmt::format("{} is far more than the tokenizer's {} tokens", *vocab_size, by_id.size()));
    }
    n = *vocab_size;
  }
  const std::string unk = model.contains("unk_token") && model["unk_token"].is_string() ? model["unk_token"].get<std::string>() : "";
  tok.tokens.resize(static_cast<size_t>(n));
  tok.types.assign(static_cast<size_t>(n), kNormal);
  for (int64_t i = 0; i < n; ++i) {
    const size_t u = static_cast<size_t>(i);
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tok.tokens[u] = fmt::format("[PAD{}]", i);
      tok.types[u] = kUnused;
      continue;
    }
    std::string text = it->second;
    if (added_special.count(i) || added_plain.count(i)) {
      if (added_special.count(i) || looks_special(text)) {
        tok.types[u] = kControl;
      } else {
        text = replace_all(std::move(text), kSpmSpace, " ");  // llama.cpp pre-normalises user-defined spaces
        tok.types[u] = kUserDefined;
      }
    } else if (spm_flavour) {
      // LlamaHfVocab: <0xNN> pieces are byte-fallback tokens. The unknown piece keeps SentencePiece's
      // UNKNOWN type, as a tokenizer.model conversion gives it.
      const bool byte = text.size() == 6 && text.starts_with("<0x") && text.back() == '>' &&
                        std::isxdigit(static_cast<unsigned char>(text[3])) && std::isxdigit(static_cast<unsigned char>(text[4]));
      if (byte) tok.types[u] = kByte;
      else if (text == unk) tok.types[u] = kUnknown;
    }
    tok.tokens[u] = std::move(text);
  }
  // Merges: HF refuses a merge whose parts or result are not tokens; so do we.
  std::map<std::string_view, int64_t> index;
  for (size_t i = 0; i < tok.tokens.size(); ++i) index.emplace(tok.tokens[i], static_cast<int64_t>(i));
  if (model.contains("merges") && !model["merges"].is_null()) {
    const Json& merges = model["merges"];
    if (!merges.is_array()) return tj.error("model.merges", "is not an array");
    tok.merges.reserve(merges.size());
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
      Result<std::string> m = merge_string(merges[i], tj, i);
      if (!m) return m.error();
      const size_t sp = m->find(' ', 1);
      const std::string_view l = std::string_view(*m).substr(0, sp), r = std::string_view(*m).substr(sp + 1);
      joined.assign(l);
      joined.append(r);
      // The list form's spaces were re-spelled as U+0120; look the parts up as HF spells them.
      auto known = [&](std::string_view t) { return index.count(t) || index.count(replace_all(std::string(t), "\xC4\xA0", " ")); };
      if (!known(l) || !known(r) || !known(joined)) {
        return tj.error(fmt::format("model.merges[{}]", i), fmt::format("\"{}\": a part or the result is not in model.vocab", *m));
      }
      tok.merges.push_back(std::move(*m));
    }
  }
  return Status::Ok();
}

// ---- SentencePiece (tokenizer.model), llama.cpp's _create_vocab_sentencepiece.
Status build_spm_tokens(const std::string& path, const std::string& bytes, const JsonFile& tj, const JsonFile& tc,
                        const JsonFile& added_json, const std::vector<Added>& added, std::optional<int64_t> vocab_size,
                        const JsonFile& cfg, Tok& tok, SpmModel& m, std::vector<std::string>& warnings) {
  Result<SpmModel> parsed = parse_sentencepiece_model(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), path);
  if (!parsed) return parsed.error();
  m = std::move(*parsed);
  if (vocab_size && too_much_padding(m.pieces.size(), *vocab_size)) {
    return cfg.error("vocab_size", fmt::format("{} is far more than the {} pieces of {}", *vocab_size, m.pieces.size(), path));
  }
  const size_t n = static_cast<size_t>(vocab_size.value_or(static_cast<int64_t>(m.pieces.size())));
  tok.tokens.resize(n);
  tok.scores.assign(n, -10000.0f);
  tok.types.assign(n, kUnused);
  for (size_t i = 0; i < n; ++i) tok.tokens[i] = fmt::format("[PAD{}]", i);
  if (m.pieces.size() > n) {
    warnings.push_back(fmt::format("{}: {} pieces, config.json vocab_size {}: pieces from id {} are dropped", path,
                                   m.pieces.size(), n, n));
  }
  for (size_t i = 0; i < std::min(n, m.pieces.size()); ++i) {
    const SpmPiece& p = m.pieces[i];
    tok.tokens[i] = p.piece;
    tok.scores[i] = p.score;
    // llama.cpp maps a USER_DEFINED piece to NORMAL (SentencePieceProcessor has no IsUserDefined); we keep
    // USER_DEFINED so that such a piece stays whole, as SentencePiece and HF (an added token) keep it.
    tok.types[i] = static_cast<int32_t>(p.type);
  }
  auto set_added = [&](int64_t id, std::string text, bool control, const std::string& from) {
    if (id < 0 || static_cast<size_t>(id) >= n) {
      warnings.push_back(fmt::format("{}: added token {} (\"{}\") is past the vocabulary ({} tokens); ignored", from, id, text, n));
      return;
    }
    const size_t u = static_cast<size_t>(id);
    if (!control) text = replace_all(std::move(text), kSpmSpace, " ");
    tok.tokens[u] = std::move(text);
    tok.scores[u] = -1000.0f;
    tok.types[u] = control ? kControl : kUserDefined;
  };
  if (added_json.present()) {
    for (const auto& [text, id] : added_json.json.items()) {
      if (!id.is_number_integer()) return added_json.error(text, "id is not an integer");
      set_added(id.get<int64_t>(), text, false, added_json.path);
    }
  }
  for (const Added& a : added) set_added(a.id, a.content, a.special || looks_special(a.content), tj.path);
  if (tc.present() && tc.json.contains("added_tokens_decoder")) {
    const Json& dec = tc.json["added_tokens_decoder"];
    if (!dec.is_object()) return tc.error("added_tokens_decoder", "is not an object");
    for (const auto& [key, e] : dec.items()) {
      const std::string field = "added_tokens_decoder." + key;
      int64_t id = -1;
      if (key.empty() || key.size() > 10 || !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return tc.error(field, "key is not a token id");
      }
      id = std::stoll(key);
      if (!e.is_object() || !e.contains("content") || !e["content"].is_string()) return tc.error(field, "has no string \"content\"");
      const std::string content = e["content"].get<std::string>();
      set_added(id, content, e.value("special", false) || looks_special(content), tc.path);
    }
  }
  return Status::Ok();
}

void push_u32(std::vector<GgufKv>& kvs, std::string key, int64_t v) {
  kvs.push_back({std::move(key), GgufValue::u32(static_cast<uint32_t>(v))});
}

}  // namespace

const std::array<std::string_view, 8> HfTokenizerSources::kFileNames = {
    "tokenizer.json",    "tokenizer_config.json", "config.json",         "generation_config.json",
    "added_tokens.json", "tokenizer.model",       "chat_template.jinja", "chat_template.json"};

std::optional<std::string>* HfTokenizerSources::file(std::string_view name) {
  std::optional<std::string>* members[] = {&tokenizer_json,    &tokenizer_config_json, &config_json,
                                           &generation_config_json, &added_tokens_json, &tokenizer_model,
                                           &chat_template_jinja,    &chat_template_json};
  static_assert(std::size(members) == kFileNames.size());
  for (size_t i = 0; i < kFileNames.size(); ++i)
    if (kFileNames[i] == name) return members[i];
  return nullptr;
}

Result<HfTokenizerSources> read_hf_tokenizer_sources(const std::string& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) return Error{model_dir, "", "is not a directory"};
  HfTokenizerSources src;
  src.dir = model_dir;
  for (std::string_view name : HfTokenizerSources::kFileNames) {
    Result<std::optional<std::string>> bytes = read_file(model_dir + "/" + std::string(name));
    if (!bytes) return bytes.error();
    *src.file(name) = std::move(*bytes);
  }
  return src;
}

Result<std::vector<GgufKv>> hf_tokenizer_to_gguf(const std::string& model_dir, std::vector<std::string>& warnings) {
  Result<HfTokenizerSources> src = read_hf_tokenizer_sources(model_dir);
  if (!src) return src.error();
  return hf_tokenizer_to_gguf(*src, warnings);
}

Result<std::vector<GgufKv>> hf_tokenizer_to_gguf(const HfTokenizerSources& src, std::vector<std::string>& warnings) {
  const std::string& model_dir = src.dir;
  Result<JsonFile> tj = parse_json_file(model_dir, "tokenizer.json", src.tokenizer_json);
  if (!tj) return tj.error();
  Result<JsonFile> tc = parse_json_file(model_dir, "tokenizer_config.json", src.tokenizer_config_json);
  if (!tc) return tc.error();
  Result<JsonFile> cfg = parse_json_file(model_dir, "config.json", src.config_json);
  if (!cfg) return cfg.error();
  Result<JsonFile> gen = parse_json_file(model_dir, "generation_config.json", src.generation_config_json);
  if (!gen) return gen.error();
  Result<JsonFile> added_json = parse_json_file(model_dir, "added_tokens.json", src.added_tokens_json);
  if (!added_json) return added_json.error();
  const std::string spm_path = model_dir + "/tokenizer.model";
  const std::optional<std::string>& spm_bytes = src.tokenizer_model;

  if (tc->present()) {
    for (const char* k : {"add_bos_token", "add_eos_token"}) {
      if (wrong_type(tc->json, k, Json::value_t::boolean)) return tc->error(k, "is not a boolean");
    }
  }
  Result<std::vector<Added>> added = read_added_tokens(*tj);
  if (!added) return added.error();
  Result<std::optional<int64_t>> vocab_size = config_vocab_size(*cfg);
  if (!vocab_size) return vocab_size.error();

  Tok tok;
  std::vector<GgufKv> kvs;
  SpmModel spm;
  enum class Kind { kSpmModel, kSpmJson, kBpe } kind;
  // As llama.cpp's LlamaModel.set_vocab: SentencePiece first, then tokenizer.json.
  if (spm_bytes) {
    kind = Kind::kSpmModel;
    if (Status s = build_spm_tokens(spm_path, *spm_bytes, *tj, *tc, *added_json, *added, *vocab_size, *cfg, tok, spm, warnings); !s) {
      return s.error();
    }
  } else {
    if (!tj->present()) return Error{model_dir, "tokenizer.json", "missing (and there is no tokenizer.model)"};
    if (!tj->json.contains("model") || !tj->json["model"].is_object()) return tj->error("model", "missing or not an object");
    const Json& model = tj->json["model"];
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") {
      return tj->error("model.type", fmt::format("\"{}\" is not supported (only BPE: byte-level, or SentencePiece-style with byte_fallback)", type));
    }
    if (wrong_type(model, "byte_fallback", Json::value_t::boolean)) return tj->error("model.byte_fallback", "is not a boolean");
    if (wrong_type(model, "ignore_merges", Json::value_t::boolean)) return tj->error("model.ignore_merges", "is not a boolean");
    const bool byte_level = tj->json.dump().find("\"ByteLevel\"") != std::string::npos;
    kind = !byte_level && model.value("byte_fallback", false) ? Kind::kSpmJson : Kind::kBpe;
    if (!byte_level && kind == Kind::kBpe) {
      warnings.push_back(tj->path + ": neither ByteLevel nor byte_fallback: read as byte-level BPE");
    }
    if (Status s = build_bpe_tokens(*tj, *added, *vocab_size, *cfg, kind == Kind::kSpmJson, tok); !s) return s.error();
  }

  Result<Specials> sp = read_specials(*tj, *tc, *cfg, *gen, *added, tok, warnings);
  if (!sp) return sp.error();
  if (kind == Kind::kSpmModel) {
    // A directory with nothing but tokenizer.model: the model's own trainer ids.
    for (auto [typ, id] : {std::pair<std::string_view, int32_t>{"bos", spm.bos_id}, {"eos", spm.eos_id}, {"unk", spm.unk_id}, {"pad", spm.pad_id}}) {
      if (id >= 0) {
        if (Status s = set_special(*sp, typ, id, tok.tokens.size(), spm_path, warnings); !s) return s.error();
      }
    }
  }

  // Duplicates would make ids ambiguous; HF and our runtime refuse them too.
  {
    std::map<std::string_view, size_t> seen;
    for (size_t i = 0; i < tok.tokens.size(); ++i) {
      if (auto [it, fresh] = seen.emplace(tok.tokens[i], i); !fresh) {
        const std::string& from = kind == Kind::kSpmModel ? spm_path : tj->path;
        return Error{from, "tokens", fmt::format("token {} \"{}\" repeats token {}", i, tok.tokens[i], it->second)};
      }
    }
  }

  if (kind == Kind::kBpe) {
    if (!sp->add_bos) sp->add_bos = false;  // HF adds nothing without a post-processor or add_bos_token
    const BpeCheckVocab check{tok.tokens, tok.types, tok.merges, sp->get("bos").value_or(-1), sp->get("eos").value_or(-1),
                              sp->add_bos.value_or(false), sp->add_eos.value_or(false)};
    const std::string pre = choose_bpe_pre(tj->json, tj->path, check, warnings);
    kvs.push_back({"tokenizer.ggml.model", GgufValue::str("gpt2")});
    kvs.push_back({"tokenizer.ggml.pre", GgufValue::str(pre)});
  } else {
    kvs.push_back({"tokenizer.ggml.model", GgufValue::str("llama")});
    kvs.push_back({"tokenizer.ggml.pre", GgufValue::str("default")});
  }
  if (kind == Kind::kSpmJson) {
    // tokenizer.json's merges rank what SentencePiece's scores rank: a piece made by an earlier merge
    // must win, so its score is minus the rank of the first merge that makes it (LlamaHfVocab writes
    // -1000 for all, which leaves the merge order to chance).
    tok.scores.assign(tok.tokens.size(), 0.0f);
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < tok.tokens.size(); ++i) index.emplace(tok.tokens[i], i);
    std::vector<bool> done(tok.tokens.size(), false);
    for (size_t r = 0; r < tok.merges.size(); ++r) {
      const std::string& m = tok.merges[r];
      const size_t spc = m.find(' ', 1);
      auto it = index.find(m.substr(0, spc) + m.substr(spc + 1));
      if (it != index.end() && !done[it->second]) {
        done[it->second] = true;
        tok.scores[it->second] = -static_cast<float>(r + 1);
      }
    }
  }
  kvs.push_back({"tokenizer.ggml.tokens", GgufValue::array(tok.tokens)});
  if (kind != Kind::kBpe) kvs.push_back({"tokenizer.ggml.scores", GgufValue::array(tok.scores)});
  kvs.push_back({"tokenizer.ggml.token_type", GgufValue::array(tok.types)});
  if (kind == Kind::kBpe) kvs.push_back({"tokenizer.ggml.merges", GgufValue::array(tok.merges)});

  static constexpr std::pair<std::string_view, std::string_view> kIdKeys[] = {
      {"bos", "tokenizer.ggml.bos_token_id"},   {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},  // sic: llama.cpp's key
      {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", "tokenizer.ggml.cls_token_id"},
      {"mask", "tokenizer.ggml.mask_token_id"}};
  for (const auto& [typ, id] : sp->ids) {
    for (const auto& [t, key] : kIdKeys) {
      if (t == typ) push_u32(kvs, std::string(key), id);
    }
  }
  // Unless told otherwise, llama.cpp's loader adds BOS to a SentencePiece vocabulary, id 1 when the file
  // names none; with no such token that default points at nothing, so say "no BOS" in the file.
  if (kind != Kind::kBpe && !sp->add_bos && !sp->get("bos") && tok.tokens.size() < 2) {
    warnings.push_back(fmt::format("{}: no BOS token (none named, and the default id 1 is past the {} token(s)); "
                                   "tokenizer.ggml.add_bos_token is written false",
                                   kind == Kind::kSpmModel ? spm_path : tj->path, tok.tokens.size()));
    sp->add_bos = false;
  }
  if (sp->add_bos) kvs.push_back({"tokenizer.ggml.add_bos_token", GgufValue::boolean(*sp->add_bos)});
  if (sp->add_eos) kvs.push_back({"tokenizer.ggml.add_eos_token", GgufValue::boolean(*sp->add_eos)});
  if (sp->add_bos.value_or(false) && !sp->get("bos")) {
    return Error{tc->path, "bos_token", "BOS is to be added but no bos token id was found"};
  }
  if (sp->add_eos.value_or(false) && !sp->get("eos")) {
    return Error{tc->path, "eos_token", "EOS is to be added but no eos token id was found"};
  }

  if (kind == Kind::kSpmModel) {
    kvs.push_back({"tokenizer.ggml.add_space_prefix", GgufValue::boolean(spm.add_dummy_prefix)});
    if (spm.remove_extra_whitespaces) {
      warnings.push_back(spm_path + ": normalizer_spec.remove_extra_whitespaces is set; llama.cpp (and HF's Llama "
                                    "tokenizers) keep whitespace runs as they are");
    }
    if (spm.model_type == 1) {
      warnings.push_back(spm_path + ": a Unigram model; llama.cpp's SentencePiece tokenizer merges by score, which can "
                                    "segment differently from Unigram's best path");
    }
  } else if (kind == Kind::kSpmJson) {
    const std::string dump = tj->json.dump();
    const bool prepend = dump.find("\"Prepend\"") != std::string::npos ||
                         (dump.find("\"Metaspace\"") != std::string::npos && dump.find("\"never\"") == std::string::npos);
    kvs.push_back({"tokenizer.ggml.add_space_prefix", GgufValue::boolean(prepend)});
  } else {
    std::string why;
    bool prefix_space = false;
    (void)hf_pre_tokenizer_patterns(tj->json.value("pre_tokenizer", Json()), why, prefix_space);
    // Written as the SmolLM2 GGUF has it; byte-level BPE in llama.cpp never adds a space itself.
    kvs.push_back({"tokenizer.ggml.add_space_prefix", GgufValue::boolean(prefix_space)});
    if (prefix_space) {
      warnings.push_back(tj->path + ": pre_tokenizer ByteLevel.add_prefix_space is true; llama.cpp does not add that "
                                    "space, so a text's first word may tokenize differently");
    }
  }
  if (Status s = add_chat_templates(src, *tc, kvs); !s) return s.error();
  return kvs;
}

}  // namespace qe::tokenizer
