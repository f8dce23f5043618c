#include "formats/gguf_json.h"

#include "formats/xxh3.h"

namespace qe {
namespace {

nlohmann::json array_to_json(const GgufArray& a) {
  nlohmann::json out = nlohmann::json::array();
  std::visit(
      [&](const auto& v) {
        using E = typename std::decay_t<decltype(v)>::value_type;
        for (const auto& x : v) {
          if constexpr (std::is_same_v<E, GgufArray>) {
            out.push_back(array_to_json(x));
          } else if constexpr (std::is_same_v<E, float>) {
            out.push_back(static_cast<double>(x));
          } else if constexpr (std::is_same_v<E, bool>) {
            out.push_back(static_cast<bool>(x));  // x is a std::vector<bool> reference proxy
          } else if constexpr (std::is_same_v<E, uint8_t> || std::is_same_v<E, uint16_t> ||
                               std::is_same_v<E, uint32_t>) {
            out.push_back(static_cast<uint64_t>(x));
          } else if constexpr (std::is_same_v<E, int8_t> || std::is_same_v<E, int16_t> ||
                               std::is_same_v<E, int32_t>) {
            out.push_back(static_cast<int64_t>(x));
          } else {
            out.push_back(x);
          }
        }
      },
      a.storage());
  return out;
}

}  // namespace

nlohmann::json gguf_value_to_json(const GgufValue& value) {
  return std::visit(
      [](const auto& x) -> nlohmann::json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          return array_to_json(x);
        } else if constexpr (std::is_same_v<T, float>) {
          return static_cast<double>(x);
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> ||
                             std::is_same_v<T, uint32_t>) {
          return static_cast<uint64_t>(x);  // int8/uint8 would otherwise risk char semantics
        } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, int16_t> ||
                             std::is_same_v<T, int32_t>) {
          return static_cast<int64_t>(x);
        } else {
          return x;
        }
      },
      value.storage());
}

nlohmann::json gguf_to_json(const GgufFile& file, bool with_hash) {
  nlohmann::json meta = nlohmann::json::object();
  nlohmann::json types = nlohmann::json::object();
  for (const GgufKv& kv : file.metadata()) {
    meta[kv.key] = gguf_value_to_json(kv.value);
    types[kv.key] = kv.value.type_name();
  }
  nlohmann::json tensors = nlohmann::json::array();
  for (const GgufTensorInfo& t : file.tensors()) {
    nlohmann::json j = {
        {"name", t.name},          {"type", std::string(ggml_type_name(t.type))},
        {"shape", t.dims},         {"bytes", t.n_bytes},
        {"offset", t.file_offset},
    };
    if (with_hash) j["xxh3"] = xxh3_hex(t.data);
    tensors.push_back(std::move(j));
  }
  return {
      {"metadata", std::move(meta)}, {"metadata_types", std::move(types)}, {"tensors", std::move(tensors)}};
}

}  // namespace qe
