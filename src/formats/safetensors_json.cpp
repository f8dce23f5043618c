#include "formats/safetensors_json.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <new>
#include <optional>
#include <unordered_set>
#include <vector>

#include "formats/hf_model_dir.h"
#include "formats/safetensors.h"

namespace qe {
namespace {

struct TooDeep {};  // thrown from the parser callback to stop at once; caught below, never escapes

template <class Json>
Result<Json> parse_strict(std::string_view text, const std::string& file, const std::string& what,
                          size_t max_depth) {
  // One frame per open object: the keys seen so far and the last one (for the path in the message).
  struct Frame {
    std::unordered_set<std::string> keys;
    std::string last;
  };
  std::vector<Frame> objects;
  size_t depth = 0;
  std::optional<std::string> duplicate;

  auto callback = [&](int /*depth*/, typename Json::parse_event_t event, Json& parsed) -> bool {
    using E = typename Json::parse_event_t;
    switch (event) {
      case E::object_start:
        if (++depth > max_depth) throw TooDeep{};
        objects.emplace_back();
        break;
      case E::array_start:
        if (++depth > max_depth) throw TooDeep{};
        break;
      case E::object_end:
        --depth;
        objects.pop_back();
        break;
      case E::array_end:
        --depth;
        break;
      case E::key: {
        Frame& top = objects.back();
        top.last = parsed.template get<std::string>();
        if (!top.keys.insert(top.last).second && !duplicate) {
          std::string path;
          for (const Frame& f : objects) {
            if (!path.empty()) path += '.';
            path += f.last;
          }
          duplicate = path;
        }
        break;
      }
      case E::value:
        break;
    }
    return true;
  };

  // nlohmann's lexer takes a NUL byte for the end of the input, so "{}\0<anything>" would parse as {}.
  // JSON never contains a raw NUL (in strings it must be escaped), so any NUL is an error.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return Error{file, what, fmt::format("invalid JSON: NUL byte at offset {}", nul)};
  try {
    Json j = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                         /*ignore_comments=*/false);
    if (duplicate) return Error{file, what, fmt::format("duplicate key \"{}\" in the JSON", *duplicate)};
    return j;
  } catch (const TooDeep&) {
    return Error{file, what, fmt::format("JSON nested deeper than {} levels", max_depth)};
  } catch (const nlohmann::json::exception& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: the message is for people.
    std::string_view msg = e.what();
    if (!msg.empty() && msg.front() == '[') {
      auto close = msg.find("] ");
      if (close != std::string_view::npos) msg.remove_prefix(close + 2);
    }
    return Error{file, what, fmt::format("invalid JSON: {}", msg)};
  } catch (const std::bad_alloc&) {
    return Error{file, what, "out of memory while parsing the JSON"};
  }
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
