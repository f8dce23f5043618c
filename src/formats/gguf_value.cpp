#include "formats/gguf_value.h"

#include <algorithm>
#include <array>

#include "formats/error.h"

namespace qe {
namespace {

constexpr std::array<std::string_view, kGgufTypeCount> kNames = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};

template <size_t I>
GgufArray::Storage empty_storage(size_t id) {
  if constexpr (I + 1 < std::variant_size_v<GgufArray::Storage>) {
    if (id != I) return empty_storage<I + 1>(id);
  }
  return GgufArray::Storage(std::in_place_index<I>);
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  const auto id = static_cast<uint32_t>(type);
  QE_CHECK(id < kGgufTypeCount);
  return kNames[id];
}

GgufArray GgufArray::empty(GgufType elem_type) {
  QE_CHECK(gguf_type_valid(static_cast<uint32_t>(elem_type)));
  return GgufArray(empty_storage<0>(static_cast<size_t>(elem_type)));
}

uint64_t GgufArray::size() const {
  return std::visit([](const auto& v) { return static_cast<uint64_t>(v.size()); }, s_);
}

std::string GgufArray::type_name() const {
  const auto* inner = get<GgufArray>();
  if (inner == nullptr) return "array[" + std::string(gguf_type_name(elem_type())) + "]";
  if (inner->empty()) return "array[array]";
  std::string first = inner->front().type_name();
  for (const GgufArray& a : *inner)
    if (a.type_name() != first) return "array[array]";
  return "array[" + first + "]";
}

int GgufArray::depth() const {
  const auto* inner = get<GgufArray>();
  if (inner == nullptr) return 1;
  int deepest = 0;
  for (const GgufArray& a : *inner) deepest = std::max(deepest, a.depth());
  return 1 + deepest;
}

std::string GgufValue::type_name() const {
  if (const auto* a = get<GgufArray>()) return a->type_name();
  return std::string(gguf_type_name(type()));
}

}  // namespace qe
