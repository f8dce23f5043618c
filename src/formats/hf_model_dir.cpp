#include "formats/hf_model_dir.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "formats/mapped_file.h"
#include "formats/safetensors_json.h"

namespace qe {
namespace fs = std::filesystem;

namespace {

std::string join(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

Result<nlohmann::json> read_json_file(const std::string& path) {
  auto map = MappedFile::open(path);
  if (!map) return map.error();
  // Index and config files are a few KB to a few MB; the cap keeps a hostile one from taking all memory.
  if (map->size() > kSafetensorsMaxHeaderBytes) {
    return Error{path, "",
                 fmt::format("{} bytes is above the {}-byte limit for a JSON file", map->size(),
                             kSafetensorsMaxHeaderBytes)};
  }
  std::string_view text(reinterpret_cast<const char*>(map->data()), static_cast<size_t>(map->size()));
  return parse_json_strict(text, path, "");
}

// True when `p` is `root` or lies beneath it (both canonical: no symlinks, no "." or "..").
bool is_within(const fs::path& root, const fs::path& p) {
  auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  return r == root.end();
}

// Checks a shard name from the index and returns its canonical path. `field` names the index entry.
Result<fs::path> resolve_shard(const std::string& dir, const fs::path& real_dir,
                               const std::string& index_path, const std::string& field,
                               const std::string& shard) {
  if (shard.empty()) return Error{index_path, field, "empty shard file name"};
  if (shard.find('\0') != std::string::npos)
    return Error{index_path, field, "shard file name contains a NUL byte"};
  fs::path rel(shard);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory()) {
    return Error{
        index_path, field,
        fmt::format("shard path \"{}\" is absolute; shards must lie inside the model directory", shard)};
  }
  for (const fs::path& part : rel) {
    if (part == "..") {
      return Error{index_path, field,
                   fmt::format("shard path \"{}\" has a \"..\" component; shards must lie inside the model "
                               "directory",
                               shard)};
    }
  }
  const std::string full = join(dir, shard);
  std::error_code ec;
  fs::path real = fs::canonical(full, ec);
  if (ec) {
    return Error{index_path, field,
                 fmt::format("shard file \"{}\" cannot be opened: {}", shard, ec.message())};
  }
  if (!is_within(real_dir, real)) {
    return Error{
        index_path, field,
        fmt::format("shard path \"{}\" resolves to {}, outside the model directory", shard, real.string())};
  }
  return real;
}

}  // namespace

Result<HfModelDir> HfModelDir::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (!fs::exists(dir, ec)) return Error{dir, "", "no such directory"};
    return Error{dir, "", "is not a directory"};
  }
  fs::path real_dir = fs::canonical(dir, ec);
  if (ec) return Error{dir, "", ec.message()};

  HfModelDir out;
  out.dir_ = dir;

  const std::string index_path = join(dir, kHfIndexFile);
  const std::string single_path = join(dir, kHfSingleFile);
  if (fs::exists(index_path, ec)) {
    out.sharded_ = true;
    auto index = read_json_file(index_path);
    if (!index) return index.error();
    if (!index->is_object())
      return Error{index_path, "", fmt::format("must be a JSON object, got {}", index->type_name())};
    auto wm = index->find("weight_map");
    if (wm == index->end()) return Error{index_path, "weight_map", "missing"};
    if (!wm->is_object())
      return Error{index_path, "weight_map", fmt::format("must be an object, got {}", wm->type_name())};

    // Open each distinct shard once (two spellings of one file, "a" and "./a", count as one).
    std::unordered_map<std::string, size_t> shard_by_real;  // canonical path -> index into shards_
    std::vector<std::pair<std::string, size_t>> listed;     // tensor -> shard, from the index
    listed.reserve(wm->size());
    for (const auto& [tensor, value] : wm->items()) {
      const std::string field = "weight_map." + tensor;
      if (!value.is_string())
        return Error{index_path, field, fmt::format("shard must be a string, got {}", value.type_name())};
      const std::string shard = value.get<std::string>();
      auto real = resolve_shard(dir, real_dir, index_path, field, shard);
      if (!real) return real.error();
      auto [it, fresh] = shard_by_real.emplace(real->string(), out.shards_.size());
      if (fresh) {
        auto file = SafetensorsFile::open(join(dir, shard));
        if (!file) return file.error();
        out.shards_.push_back(HfShard{shard, std::move(*file)});
      }
      listed.emplace_back(tensor, it->second);
    }
    if (out.shards_.empty()) return Error{index_path, "weight_map", "lists no tensors"};

    // Shard order by file name; remap the indices taken above.
    std::vector<size_t> order(out.shards_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return out.shards_[a].file_name < out.shards_[b].file_name; });
    std::vector<size_t> new_pos(order.size());
    std::vector<HfShard> sorted;
    sorted.reserve(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      new_pos[order[i]] = i;
      sorted.push_back(std::move(out.shards_[order[i]]));
    }
    out.shards_ = std::move(sorted);
    for (auto& [tensor, shard] : listed) shard = new_pos[shard];

    // Every tensor of every shard exactly once across shards.
    for (size_t s = 0; s < out.shards_.size(); ++s) {
      for (const SafetensorsTensor& t : out.shards_[s].file.tensors()) {
        auto [it, fresh] = out.index_.emplace(t.name, out.tensors_.size());
        if (!fresh) {
          const HfTensor& first = out.tensors_[it->second];
          return Error{out.shards_[s].file.name(), "tensor " + t.name,
                       fmt::format("also present in shard {}; a tensor must be in exactly one shard",
                                   out.shards_[first.shard].file_name)};
        }
        out.tensors_.push_back(HfTensor{&t, s});
      }
    }
    // The index and the shards agree.
    for (const auto& [tensor, shard] : listed) {
      auto it = out.index_.find(tensor);
      if (it == out.index_.end() || out.tensors_[it->second].shard != shard) {
        return Error{index_path, "weight_map." + tensor,
                     fmt::format("tensor is not in its shard {}", out.shards_[shard].file_name)};
      }
    }
    if (listed.size() != out.tensors_.size()) {
      for (const HfTensor& t : out.tensors_) {
        if (!wm->contains(t.info->name)) {
          return Error{out.shards_[t.shard].file.name(), "tensor " + t.info->name,
                       fmt::format("present in the shard but not listed in {}", kHfIndexFile)};
        }
      }
    }
  } else if (fs::exists(single_path, ec)) {
    auto file = SafetensorsFile::open(single_path);
    if (!file) return file.error();
    out.shards_.push_back(HfShard{std::string(kHfSingleFile), std::move(*file)});
    for (const SafetensorsTensor& t : out.shards_[0].file.tensors()) {
      out.index_.emplace(t.name, out.tensors_.size());
      out.tensors_.push_back(HfTensor{&t, 0});
    }
  } else {
    return Error{dir, "", fmt::format("no {} or {} in this directory", kHfSingleFile, kHfIndexFile)};
  }

  const std::string config_path = join(dir, kHfConfigFile);
  if (fs::exists(config_path, ec)) {
    auto config = read_json_file(config_path);
    if (!config) return config.error();
    if (!config->is_object())
      return Error{config_path, "", fmt::format("must be a JSON object, got {}", config->type_name())};
    out.config_ = std::move(*config);
  }
  return out;
}

const HfTensor* HfModelDir::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<FloatTensorView> HfModelDir::float_tensor(std::string_view name) const {
  const HfTensor* t = find(name);
  if (!t) return Error{dir_, "tensor " + std::string(name), "not in the model"};
  return float_tensor_view(*t->info, shard_path(*t));
}

}  // namespace qe
