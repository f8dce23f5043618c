// A Hugging Face model directory: model.safetensors, or model.safetensors.index.json whose weight_map
// sends each tensor to a shard file; plus config.json (kept raw: the converter interprets it).
// The index is hostile input too: a shard path must stay inside the directory (no absolute path, no "..",
// no symlink resolving outside), every shard must exist and parse, every tensor of the index must be in
// its shard, and every tensor of a shard must be in the index, exactly once across all shards.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "formats/safetensors.h"

namespace qe {

inline constexpr std::string_view kHfSingleFile = "model.safetensors";
inline constexpr std::string_view kHfIndexFile = "model.safetensors.index.json";
inline constexpr std::string_view kHfConfigFile = "config.json";

struct HfShard {
  std::string
      file_name;  // relative to the directory, as the index spells it ("model-00001-of-00002.safetensors")
  SafetensorsFile file;
};

struct HfTensor {
  const SafetensorsTensor* info;  // name, dtype, shape, offset (in its shard), size, data
  size_t shard;                   // index into HfModelDir::shards()
};

class HfModelDir {
 public:
  static Result<HfModelDir> open(const std::string& dir);

  HfModelDir(HfModelDir&&) noexcept = default;
  HfModelDir& operator=(HfModelDir&&) noexcept = default;
  HfModelDir(const HfModelDir&) = delete;
  HfModelDir& operator=(const HfModelDir&) = delete;

  const std::string& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  // Sorted by file name (shard order); one entry, "model.safetensors", when not sharded.
  const std::vector<HfShard>& shards() const { return shards_; }
  // Shard by shard, each in data order.
  const std::vector<HfTensor>& tensors() const { return tensors_; }
  // config.json as parsed (an object), or nullopt when the directory has none.
  const std::optional<nlohmann::json>& config() const { return config_; }

  // nullptr when absent.
  const HfTensor* find(std::string_view name) const;
  // Path of a tensor's shard as opened (dir + "/" + file_name), for messages.
  const std::string& shard_path(const HfTensor& t) const { return shards_[t.shard].file.name(); }
  // As SafetensorsFile::float_tensor: an Error naming the dtype for anything but F32, F16, BF16.
  Result<FloatTensorView> float_tensor(std::string_view name) const;

 private:
  HfModelDir() = default;

  std::string dir_;
  bool sharded_ = false;
  std::vector<HfShard> shards_;  // HfTensor::info points into these; moving the vector keeps it valid
  std::vector<HfTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::optional<nlohmann::json> config_;
};

}  // namespace qe
