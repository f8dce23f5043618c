#include "formats/safetensors_json.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <new>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "formats/hf_model_dir.h"
#include "formats/safetensors.h"

namespace qe {
namespace {

// A SAX handler that builds the document itself, so each key is inserted in O(1) (ordered_json) or
// O(log n) (json): nlohmann's own builder looks every key up first, which for ordered_json is a linear
// scan, so an object of n keys (a 150k-token vocabulary, a hostile header) took O(n^2). Duplicates are
// caught here with a hash set per open object; nesting is capped at max_depth; nothing throws.
template <class Json>
class StrictBuilder {
 public:
  using number_integer_t = typename Json::number_integer_t;
  using number_unsigned_t = typename Json::number_unsigned_t;
  using number_float_t = typename Json::number_float_t;
  using string_t = typename Json::string_t;
  using binary_t = typename Json::binary_t;

  explicit StrictBuilder(size_t max_depth) : max_depth_(max_depth) {}

  bool null() { return value(Json(nullptr)); }
  bool boolean(bool v) { return value(Json(v)); }
  bool number_integer(number_integer_t v) { return value(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return value(Json(v)); }
  bool number_float(number_float_t v, const string_t& /*text*/) { return value(Json(v)); }
  bool string(string_t& v) { return value(Json(std::move(v))); }
  bool binary(binary_t& v) { return value(Json::binary(std::move(v))); }  // not in text JSON

  bool start_object(size_t /*elements*/) {
    if (!deeper()) return false;
    Json* o = put(Json::object());
    open_.push_back({o, {}, {}});
    return true;
  }
  bool key(string_t& k) {
    Open& top = open_.back();
    top.last = k;
    if (!top.keys.insert(k).second) {
      std::string path;
      for (const Open& f : open_) {
        if (f.value->is_object()) path += (path.empty() ? "" : ".") + f.last;
      }
      error_ = fmt::format("duplicate key \"{}\" in the JSON", path);
      return false;
    }
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(size_t /*elements*/) {
    if (!deeper()) return false;
    open_.push_back({put(Json::array()), {}, {}});
    return true;
  }
  bool end_array() { return close(); }
  bool parse_error(size_t /*position*/, const std::string& /*last_token*/, const nlohmann::json::exception& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: the message is for people.
    std::string_view msg = e.what();
    if (!msg.empty() && msg.front() == '[') {
      if (auto close = msg.find("] "); close != std::string_view::npos) msg.remove_prefix(close + 2);
    }
    error_ = fmt::format("invalid JSON: {}", msg);
    return false;
  }

  Json& root() { return root_; }
  const std::string& error() const { return error_; }

 private:
  struct Open {
    Json* value;                           // the object or array being filled
    std::unordered_set<std::string> keys;  // objects: the keys so far
    std::string last;                      // objects: the latest key (where the next value goes)
  };

  bool deeper() {
    if (open_.size() + 1 > max_depth_) {
      error_ = fmt::format("JSON nested deeper than {} levels", max_depth_);
      return false;
    }
    return true;
  }
  bool value(Json&& v) {
    put(std::move(v));
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }
  // Places `v` where the text has it and returns it. Only the innermost open container grows, so the
  // pointers held for the outer ones stay valid.
  Json* put(Json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& c = *open_.back().value;
    if (c.is_array()) {
      auto& a = c.template get_ref<typename Json::array_t&>();
      a.push_back(std::move(v));
      return &a.back();
    }
    auto& o = c.template get_ref<typename Json::object_t&>();
    if constexpr (std::is_same_v<Json, nlohmann::ordered_json>) {
      o.emplace_back(open_.back().last, std::move(v));  // the key is new: key() checked
      return &o.back().second;
    } else {
      return &o.emplace(open_.back().last, std::move(v)).first->second;
    }
  }

  size_t max_depth_;
  Json root_;
  std::vector<Open> open_;
  std::string error_;
};

template <class Json>
Result<Json> parse_strict(std::string_view text, const std::string& file, const std::string& what,
                          size_t max_depth) {
  // nlohmann's lexer takes a NUL byte for the end of the input, so "{}\0<anything>" would parse as {}.
  // JSON never contains a raw NUL (in strings it must be escaped), so any NUL is an error.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return Error{file, what, fmt::format("invalid JSON: NUL byte at offset {}", nul)};
  StrictBuilder<Json> builder(max_depth);
  try {
    if (!Json::sax_parse(text.begin(), text.end(), &builder, nlohmann::json::input_format_t::json, /*strict=*/true,
                         /*ignore_comments=*/false))
      return Error{file, what, builder.error()};
  } catch (const std::bad_alloc&) {
    return Error{file, what, "out of memory while parsing the JSON"};
  } catch (const nlohmann::json::exception& e) {  // not expected from sax_parse; kept so nothing escapes
    return Error{file, what, fmt::format("invalid JSON: {}", e.what())};
  }
  return std::move(builder.root());
}

}  // namespace

Result<nlohmann::json> parse_json_strict(std::string_view text, const std::string& file,
                                         const std::string& what, size_t max_depth) {
  return parse_strict<nlohmann::json>(text, file, what, max_depth);
}

Result<nlohmann::ordered_json> parse_ordered_json_strict(std::string_view text, const std::string& file,
                                                         const std::string& what, size_t max_depth) {
  return parse_strict<nlohmann::ordered_json>(text, file, what, max_depth);
}

namespace {

nlohmann::json tensor_json(const SafetensorsTensor& t, bool with_hash) {
  nlohmann::json e;
  e["name"] = t.name;
  e["type"] = t.dtype;
  e["shape"] = t.shape;
  e["bytes"] = t.size;
  e["offset"] = t.offset;
  if (with_hash) e["xxh3"] = xxh3_hex(t.data);
  return e;
}

}  // namespace

nlohmann::json safetensors_to_json(const SafetensorsFile& file, bool with_hash) {
  nlohmann::json out;
  out["metadata"] = nlohmann::json::object();
  for (const auto& [k, v] : file.metadata()) out["metadata"][k] = v;
  out["tensors"] = nlohmann::json::array();
  for (const SafetensorsTensor& t : file.tensors()) out["tensors"].push_back(tensor_json(t, with_hash));
  return out;
}

nlohmann::json safetensors_to_json(const HfModelDir& dir, bool with_hash) {
  nlohmann::json out;
  out["metadata"] = nlohmann::json::object();
  // Shards usually repeat the same __metadata__ ({"format": "pt"}); the first shard's value wins.
  for (const HfShard& shard : dir.shards())
    for (const auto& [k, v] : shard.file.metadata())
      if (!out["metadata"].contains(k)) out["metadata"][k] = v;
  if (dir.config()) out["metadata"]["config"] = *dir.config();
  out["tensors"] = nlohmann::json::array();
  for (const HfTensor& t : dir.tensors()) {
    nlohmann::json e = tensor_json(*t.info, with_hash);
    e["file"] = dir.shards()[t.shard].file_name;
    out["tensors"].push_back(std::move(e));
  }
  return out;
}

}  // namespace qe
