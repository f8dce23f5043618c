#include "convert/general_metadata.h"

#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <initializer_list>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace qe::convert {
namespace {

constexpr std::string_view kHfCard = "README.md";
constexpr size_t kMaxCardBytes = 1 << 20;  // a model card's front matter is a few KiB; more is not a card

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// A key the front matter can carry: GGUF's keys are printable ASCII without spaces (the spec asks for
// lower_snake_case words and dots), and a short one, since YAML caps an implicit key at 1024 characters
// (a control byte is six as an escape).
bool carriable_key(std::string_view key) {
  return key.size() <= 256 && std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// A YAML double-quoted scalar: JSON's escapes are YAML's (\" \\ \n \uXXXX ...); invalid UTF-8 becomes U+FFFD.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

template <class T>
std::string scalar_text(const T& v) {
  if constexpr (std::is_same_v<T, std::string>)
    return quoted(v);
  else if constexpr (std::is_same_v<T, bool>)
    return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>)
    return fmt::format("{}", static_cast<int>(v));
  else
    return fmt::format("{}", v);  // floats: the shortest text that reads back as the same value
}

template <class T>
std::string list_text(const std::vector<T>& elems) {
  std::string out = "[";
  for (size_t i = 0; i < elems.size(); ++i) out += (i ? ", " : "") + scalar_text(static_cast<T>(elems[i]));
  return out + "]";
}

// The value's spelling in the `gguf:` block; nullopt for an array of arrays.
std::optional<std::string> value_text(const GgufValue& v) {
  if (const auto* s = v.get<std::string>()) return quoted(*s);
  if (const auto* u = v.get<uint32_t>()) return fmt::format("{}", *u);
  if (const auto* a = v.get<GgufArray>()) {
    if (a->elem_type() == GgufType::ARRAY) return std::nullopt;
    if (const auto* strs = a->get<std::string>()) return list_text(*strs);
    return std::visit(
        [&](const auto& elems) -> std::string {
          using T = typename std::decay_t<decltype(elems)>::value_type;
          if constexpr (std::is_same_v<T, GgufArray>)
            return "";  // handled above
          else
            return fmt::format("{{type: {}, value: {}}}", quoted(a->type_name()), list_text(elems));
        },
        a->storage());
  }
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>)
          return "";  // handled above
        else
          return fmt::format("{{type: {}, value: {}}}", quoted(v.type_name()), scalar_text(x));
      },
      v.storage());
}

const GgufValue* find(const std::vector<GgufKv>& kvs, std::string_view key) {
  for (const GgufKv& kv : kvs)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

std::optional<std::string> find_string(const std::vector<GgufKv>& kvs, std::string_view key) {
  const GgufValue* v = find(kvs, key);
  const std::string* s = v ? v->get<std::string>() : nullptr;
  return s ? std::optional<std::string>(*s) : std::nullopt;
}

// base_model / datasets entries as Hub ids: the repo URL's path on huggingface.co, else organization/name.
std::vector<std::string> hub_ids(const std::vector<GgufKv>& kvs, std::string_view prefix) {
  std::vector<std::string> ids;
  const GgufValue* count = find(kvs, fmt::format("general.{}.count", prefix));
  const uint32_t* n = count ? count->get<uint32_t>() : nullptr;
  for (uint32_t i = 0; n && i < *n && i < 1024; ++i) {
    const auto url = find_string(kvs, fmt::format("general.{}.{}.repo_url", prefix, i));
    const auto org = find_string(kvs, fmt::format("general.{}.{}.organization", prefix, i));
    const auto name = find_string(kvs, fmt::format("general.{}.{}.name", prefix, i));
    constexpr std::string_view kHub = "https://huggingface.co/";
    if (url && starts_with(*url, kHub))
      ids.push_back(url->substr(kHub.size()));
    else if (org && name)
      ids.push_back(*org + "/" + *name);
    else if (name)
      ids.push_back(*name);
  }
  return ids;
}

// ---- Reading

// The text between the opening "---" line and the closing one, or nullopt when the card has none.
std::optional<std::string> front_matter(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string line, text;
  if (!std::getline(in, line) || (line != "---" && line != "---\r")) return std::nullopt;
  while (std::getline(in, line)) {
    if (line == "---" || line == "---\r") return text;
    text += line + "\n";
    if (text.size() > kMaxCardBytes) return std::nullopt;
  }
  return std::nullopt;  // never closed: not front matter
}

// Scalars: a quoted one is a string ("!" tag), a plain one is whatever it spells.
bool is_quoted(const YAML::Node& n) { return n.IsScalar() && n.Tag() == "!"; }

template <class T>
std::optional<T> parse_number(const std::string& s) {
  if constexpr (std::is_same_v<T, bool>) {
    if (s == "true") return true;
    if (s == "false") return false;
    return std::nullopt;
  } else if constexpr (std::is_floating_point_v<T>) {
    // fmt's spellings of the non-finite values, signed or not
    const bool negative = !s.empty() && s[0] == '-';
    const std::string_view magnitude = std::string_view(s).substr(negative ? 1 : 0);
    if (magnitude == "nan") return std::numeric_limits<T>::quiet_NaN();
    if (magnitude == "inf") return negative ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    T v{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
  } else {
    // int8/uint8 are read through a wider type (from_chars of a char type reads a character).
    using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
    Wide w{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), w);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    if (w < static_cast<Wide>(std::numeric_limits<T>::min()) || w > static_cast<Wide>(std::numeric_limits<T>::max()))
      return std::nullopt;
    return static_cast<T>(w);
  }
}

template <class T>
std::optional<T> element(const YAML::Node& n) {
  if (!n.IsScalar()) return std::nullopt;
  if constexpr (std::is_same_v<T, std::string>)
    return is_quoted(n) ? std::optional<std::string>(n.Scalar()) : std::nullopt;
  else
    return is_quoted(n) ? std::nullopt : parse_number<T>(n.Scalar());
}

// {type: NAME, value: V}: the value of GGUF type NAME ("int64", "array[float32]").
std::optional<GgufValue> typed_value(const YAML::Node& n) {
  if (!n.IsMap() || n.size() != 2 || !n["type"] || !n["value"] || !n["type"].IsScalar()) return std::nullopt;
  const std::string type = n["type"].Scalar();
  const YAML::Node value = n["value"];
  std::optional<GgufValue> out;
  auto try_type = [&]<class T>(T*) {
    const std::string name(gguf_type_name(gguf_type_of<T>()));
    if (type == name) {
      if (std::optional<T> v = element<T>(value)) out = GgufValue(*v);
    } else if (type == "array[" + name + "]" && value.IsSequence()) {
      std::vector<T> elems;
      for (const YAML::Node& e : value) {
        std::optional<T> v = element<T>(e);
        if (!v) return;
        elems.push_back(*v);
      }
      out = GgufValue::array(std::move(elems));
    }
  };
  try_type(static_cast<uint8_t*>(nullptr));
  try_type(static_cast<int8_t*>(nullptr));
  try_type(static_cast<uint16_t*>(nullptr));
  try_type(static_cast<int16_t*>(nullptr));
  try_type(static_cast<uint32_t*>(nullptr));
  try_type(static_cast<int32_t*>(nullptr));
  try_type(static_cast<float*>(nullptr));
  try_type(static_cast<bool*>(nullptr));
  try_type(static_cast<std::string*>(nullptr));
  try_type(static_cast<uint64_t*>(nullptr));
  try_type(static_cast<int64_t*>(nullptr));
  try_type(static_cast<double*>(nullptr));
  return out;
}

std::optional<GgufValue> block_value(const YAML::Node& n) {
  if (is_quoted(n)) return GgufValue::str(n.Scalar());
  if (n.IsScalar()) {  // plain: an unsigned 32-bit integer, else (an edited card) the string it spells
    if (std::optional<uint32_t> u = parse_number<uint32_t>(n.Scalar())) return GgufValue::u32(*u);
    return GgufValue::str(n.Scalar());
  }
  if (n.IsSequence()) {
    std::vector<std::string> strs;
    for (const YAML::Node& e : n) {
      if (!is_quoted(e)) return std::nullopt;
      strs.push_back(e.Scalar());
    }
    return GgufValue::array(std::move(strs));
  }
  return typed_value(n);
}

// An HF key that may be one string or a list of them (language: en / language: [en, fr]).
std::optional<std::vector<std::string>> strings(const YAML::Node& n) {
  if (n.IsScalar()) return std::vector<std::string>{n.Scalar()};
  if (!n.IsSequence()) return std::nullopt;
  std::vector<std::string> out;
  for (const YAML::Node& e : n) {
    if (!e.IsScalar()) return std::nullopt;
    out.push_back(e.Scalar());
  }
  return out;
}

// gguf-py's Metadata.id_to_title: hyphens become spaces, and an all-lowercase word that is not a version
// ("v1.2") or a number ("8k") is title-cased ("lc100k" -> "Lc100K": a letter after a non-letter is upper).
std::string id_to_title(const std::string& id) {
  std::string spaced = id;
  std::replace(spaced.begin(), spaced.end(), '-', ' ');
  std::istringstream words(spaced);
  std::string out, w;
  auto lower = [](unsigned char c) { return std::islower(c) != 0; };
  auto upper = [](unsigned char c) { return std::isupper(c) != 0; };
  while (words >> w) {
    const bool is_lower = std::any_of(w.begin(), w.end(), lower) && std::none_of(w.begin(), w.end(), upper);
    bool version = w.size() > 1 && w[0] == 'v' && std::isdigit(static_cast<unsigned char>(w[1]));
    for (size_t i = 1; version && i < w.size(); ++i)  // v\d+(\.\d+)*
      version = std::isdigit(static_cast<unsigned char>(w[i])) || (w[i] == '.' && i + 1 < w.size() && w[i - 1] != '.' &&
                                                                   std::isdigit(static_cast<unsigned char>(w[i + 1])));
    const bool number = std::isdigit(static_cast<unsigned char>(w[0])) != 0;
    if (is_lower && !version && !number) {
      bool after_letter = false;
      for (char& c : w) {
        const bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
        if (letter) c = static_cast<char>(after_letter ? std::tolower(static_cast<unsigned char>(c))
                                                       : std::toupper(static_cast<unsigned char>(c)));
        after_letter = letter;
      }
    }
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

// base_model / datasets entries as gguf-py writes them: count, then for an "org/name" id the name and
// organization (id_to_title) and the repo URL; for a URL the URL.
void add_hub_entries(std::vector<GgufKv>& out, std::string_view prefix, const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  out.push_back({fmt::format("general.{}.count", prefix), GgufValue::u32(static_cast<uint32_t>(ids.size()))});
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    const std::string key = fmt::format("general.{}.{}.", prefix, i);
    if (starts_with(id, "http://") || starts_with(id, "https://") || starts_with(id, "ssh://")) {
      out.push_back({key + "repo_url", GgufValue::str(id)});
      continue;
    }
    const size_t slash = id.find('/');
    out.push_back({key + "name", GgufValue::str(id_to_title(slash == std::string::npos ? id : id.substr(slash + 1)))});
    if (slash != std::string::npos) {
      out.push_back({key + "organization", GgufValue::str(id_to_title(id.substr(0, slash)))});
      out.push_back({key + "repo_url", GgufValue::str("https://huggingface.co/" + id)});
    }
  }
}

// A card without our block: its keys as gguf-py's Metadata maps them (llama.cpp's own card keys, their
// model_ forms, then HF's), written in its order.
std::vector<GgufKv> from_hf_keys(const YAML::Node& card, const std::string& path, std::vector<std::string>& warnings) {
  auto strings_at = [&](const char* hf) -> std::vector<std::string> {
    const YAML::Node n = card[hf];
    if (!n) return {};
    std::optional<std::vector<std::string>> v = strings(n);
    if (!v) warnings.push_back(fmt::format("{}: {}: not a string or a list of strings; not carried", path, hf));
    return v.value_or(std::vector<std::string>{});
  };
  // The first card key present gives the general.* key.
  auto single = [&](const char* gguf, std::initializer_list<const char*> hf) -> std::optional<GgufKv> {
    for (const char* k : hf) {
      const YAML::Node n = card[k];
      if (!n) continue;
      if (n.IsScalar()) return GgufKv{gguf, GgufValue::str(n.Scalar())};
      if (std::vector<std::string> v = strings_at(k); !v.empty()) {  // license: [a, b] -> "a,b", as gguf-py
        std::string joined;
        for (const std::string& x : v) joined += (joined.empty() ? "" : ",") + x;
        return GgufKv{gguf, GgufValue::str(joined)};
      }
      return std::nullopt;
    }
    return std::nullopt;
  };
  std::vector<GgufKv> out;
  auto add = [&](std::optional<GgufKv> kv) {
    if (kv) out.push_back(std::move(*kv));
  };
  // gguf-py's writing order (Metadata.set_gguf_meta_model).
  add(single("general.name", {"name", "model_name"}));
  add(single("general.author", {"author", "model_author", "model_creator"}));
  add(single("general.version", {"version", "model_version"}));
  add(single("general.organization", {"organization", "model_organization"}));
  add(single("general.finetune", {"finetune", "model_finetune"}));
  add(single("general.basename", {"basename", "model_basename", "model_type"}));
  add(single("general.description", {"description", "model_description"}));
  add(single("general.size_label", {"size_label", "model_size_label"}));
  add(single("general.license", {"license"}));
  add(single("general.license.name", {"license_name"}));
  add(single("general.license.link", {"license_link"}));
  add(single("general.source.url", {"url", "model_url"}));
  add(single("general.source.doi", {"doi", "model_doi"}));
  add(single("general.source.uuid", {"uuid", "model_uuid"}));
  add(single("general.source.repo_url", {"repo_url", "model_repo_url"}));
  const char* base = card["base_model"] ? "base_model" : card["base_models"] ? "base_models" : "base_model_sources";
  add_hub_entries(out, "base_model", strings_at(base));
  const char* data = card["datasets"] ? "datasets" : card["dataset"] ? "dataset" : "dataset_sources";
  add_hub_entries(out, "dataset", strings_at(data));
  std::vector<std::string> tags = strings_at("tags"), pipeline = strings_at("pipeline_tag");
  tags.insert(tags.end(), pipeline.begin(), pipeline.end());
  if (!tags.empty()) out.push_back({"general.tags", GgufValue::array(tags)});
  std::vector<std::string> lang = strings_at("languages"), lang2 = strings_at("language");
  lang.insert(lang.end(), lang2.begin(), lang2.end());
  if (!lang.empty()) out.push_back({"general.languages", GgufValue::array(lang)});
  return out;
}

// Brackets nested deeper than this are no model card (yaml-cpp has its own depth guard too). Brackets
// inside quoted scalars and comments do not count. A quote opens a scalar only where a scalar starts
// (after a line start, ':', ',', '[', '{', '-' or '?'): an apostrophe in a comment or a plain scalar
// ("# The GGUF file's keys") is a letter, and taking it for a quote had the rest of the text read
// inside out.
bool nested_too_deep(const std::string& text) {
  int depth = 0;
  char quote = 0, prev = '\n';  // prev: the last character outside quotes that is not a blank
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote) {
      if (c == '\\' && quote == '"') ++i;
      else if (c == '\'' && quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') ++i;  // '' is a '
      else if (c == quote) quote = 0, prev = c;
      continue;
    }
    if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n')) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // a comment, to the end of its line
      continue;
    }
    if ((c == '"' || c == '\'') && std::string_view("\n:,[{-?").find(prev) != std::string_view::npos) {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > 64) return true;
    } else if (c == ']' || c == '}') {
      depth = std::max(depth - 1, 0);
    }
    if (c != ' ' && c != '\t' && c != '\r') prev = c;
  }
  return false;
}

}  // namespace

std::vector<GgufKv> carried_general_kvs(const std::vector<GgufKv>& metadata) {
  std::vector<GgufKv> out;
  for (const GgufKv& kv : metadata) {
    if (!starts_with(kv.key, "general.")) continue;
    if (kv.key == "general.architecture" || kv.key == "general.type" || kv.key == "general.file_type" ||
        kv.key == "general.quantization_version" || kv.key == "general.alignment")
      continue;
    out.push_back(kv);
  }
  return out;
}

std::string hf_front_matter(const std::vector<GgufKv>& general, std::vector<std::string>& warnings) {
  std::string md = "---\n";
  auto put = [&](std::string_view key, const std::optional<std::string>& v) {
    if (v) md += fmt::format("{}: {}\n", key, quoted(*v));
  };
  auto put_list = [&](std::string_view key, const std::vector<std::string>& v) {
    if (!v.empty()) md += fmt::format("{}: {}\n", key, list_text(v));
  };
  auto strings_of = [&](std::string_view key) {
    const GgufValue* v = find(general, key);
    const GgufArray* a = v ? v->get<GgufArray>() : nullptr;
    const std::vector<std::string>* s = a ? a->get<std::string>() : nullptr;
    return s ? *s : std::vector<std::string>{};
  };
  // The card keys llama.cpp's convert_hf_to_gguf.py (gguf-py's Metadata) reads back into the same
  // general.* keys, in its order; no pipeline_tag, which it would add to the tags.
  for (const auto& [card_key, key] :
       {std::pair{"model_name", "general.name"}, {"author", "general.author"}, {"version", "general.version"},
        {"organization", "general.organization"}, {"finetune", "general.finetune"}, {"basename", "general.basename"},
        {"description", "general.description"}, {"size_label", "general.size_label"}, {"license", "general.license"},
        {"license_name", "general.license.name"}, {"license_link", "general.license.link"}})
    put(card_key, find_string(general, key));
  put_list("base_model", hub_ids(general, "base_model"));
  put_list("datasets", hub_ids(general, "dataset"));
  put_list("tags", strings_of("general.tags"));
  put_list("language", strings_of("general.languages"));
  md += "library_name: \"transformers\"\n";
  std::string block;
  for (const GgufKv& kv : general) {
    if (!carriable_key(kv.key)) {
      warnings.push_back(fmt::format("the key {} is not printable ASCII of at most 256 bytes; not carried", quoted(kv.key)));
      continue;
    }
    if (std::optional<std::string> text = value_text(kv.value))
      block += fmt::format("  {}: {}\n", quoted(kv.key), *text);
    else
      warnings.push_back(fmt::format("{} ({}) has no spelling in README.md's front matter; not carried", kv.key,
                                     kv.value.type_name()));
  }
  if (!block.empty()) md += "# The GGUF file's general.* keys, exactly (qconvert reads them back).\ngguf:\n" + block;
  return md + "---\n\n";
}

Result<std::vector<GgufKv>> general_kvs_from_hf_dir(const std::string& dir, std::vector<std::string>& warnings) {
  const std::string path = dir + "/" + std::string(kHfCard);
  std::optional<std::string> text = front_matter(path);
  if (!text) return std::vector<GgufKv>{};
  return general_kvs_from_front_matter(*text, path, warnings);
}

Result<std::vector<GgufKv>> general_kvs_from_front_matter(const std::string& text, const std::string& path,
                                                          std::vector<std::string>& warnings) {
  YAML::Node loaded;
  try {
    if (nested_too_deep(text)) throw std::runtime_error("nested too deeply");
    loaded = YAML::Load(text);
  } catch (const std::exception& e) {
    warnings.push_back(fmt::format("{}: the front matter is not YAML ({}); ignored", path, e.what()));
    return std::vector<GgufKv>{};
  }
  const YAML::Node& card = loaded;  // const: a lookup of a missing key must not insert it
  try {
    if (!card.IsMap()) {
      if (!card.IsNull()) warnings.push_back(fmt::format("{}: the front matter is not a mapping; ignored", path));
      return std::vector<GgufKv>{};
    }
    const YAML::Node block = card["gguf"];
    if (!block) return from_hf_keys(card, path, warnings);
    if (!block.IsMap()) return Error{path, "gguf", "must map general.* keys to their values"};
    std::vector<GgufKv> out;
    for (const auto& entry : block) {
      if (!entry.first.IsScalar()) return Error{path, "gguf", "a key is not a string"};
      const std::string key = entry.first.Scalar();
      if (!starts_with(key, "general.") || !carriable_key(key))
        return Error{path, "gguf." + key, "only general.* keys (printable ASCII, at most 256 bytes) belong here"};
      for (const GgufKv& seen : out)
        if (seen.key == key) return Error{path, "gguf." + key, "appears twice"};
      std::optional<GgufValue> v = block_value(entry.second);
      if (!v)
        return Error{path, "gguf." + key,
                     "not a value qconvert wrote: a string, a list of quoted strings, an unsigned 32-bit integer, "
                     "or {type: NAME, value: V}"};
      out.push_back({key, std::move(*v)});
    }
    return carried_general_kvs(out);
  } catch (const std::exception& e) {  // yaml-cpp's conversions throw on shapes we did not check
    return Error{path, "gguf", fmt::format("unreadable: {}", e.what())};
  }
}

}  // namespace qe::convert
