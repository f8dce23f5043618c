// GGUF metadata values: the 13 on-disk value types, arrays (which may hold arrays) and their names.
// A value owns its data, so the same type serves the reader (values copied out of the map) and the
// writer. Array elements live in one typed vector, so a 150k-entry f32 score array is one allocation
// and can be handed out as a std::span.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace qe {

// Ids are on disk (ggml docs/gguf.md, gguf_metadata_value_type) and must never change.
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

inline constexpr uint32_t kGgufTypeCount = 13;  // one past the highest id

// The spec lets arrays nest without limit and gguf-py reads them recursively, so a file of nested
// array headers could exhaust a reader's stack: we read and write at most this many levels (a flat
// array is 1). Note that ggml's own loader (llama.cpp) refuses any array of arrays, so files meant
// for llama.cpp must not contain them.
inline constexpr int kGgufMaxArrayDepth = 8;

// "uint8" ... "float64", "bool", "string", "array" (the spec's names without the prefix).
std::string_view gguf_type_name(GgufType type);
inline bool gguf_type_valid(uint32_t id) {
  return id < kGgufTypeCount;
}

class GgufArray;

// C++ type of a GGUF value type; also its index in GgufValue::Storage and GgufArray::Storage.
template <class T>
inline constexpr bool kIsGgufScalar =
    std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t> || std::is_same_v<T, uint16_t> ||
    std::is_same_v<T, int16_t> || std::is_same_v<T, uint32_t> || std::is_same_v<T, int32_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, bool> || std::is_same_v<T, uint64_t> ||
    std::is_same_v<T, int64_t> || std::is_same_v<T, double>;

template <class T>
constexpr GgufType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return GgufType::UINT8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return GgufType::INT8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return GgufType::UINT16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return GgufType::INT16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return GgufType::UINT32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return GgufType::INT32;
  else if constexpr (std::is_same_v<T, float>)
    return GgufType::FLOAT32;
  else if constexpr (std::is_same_v<T, bool>)
    return GgufType::BOOL;
  else if constexpr (std::is_same_v<T, std::string>)
    return GgufType::STRING;
  else if constexpr (std::is_same_v<T, GgufArray>)
    return GgufType::ARRAY;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return GgufType::UINT64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return GgufType::INT64;
  else if constexpr (std::is_same_v<T, double>)
    return GgufType::FLOAT64;
  else
    static_assert(sizeof(T) == 0, "not a GGUF value type");
}

// An array: one element type, any number of elements (zero included; the element type is still on
// disk). Arrays of arrays hold GgufArray elements, each with its own element type.
class GgufArray {
 public:
  // Alternative i holds elements of GgufType i, so storage().index() is the element type id.
  using Storage =
      std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>, std::vector<int16_t>,
                   std::vector<uint32_t>, std::vector<int32_t>, std::vector<float>, std::vector<bool>,
                   std::vector<std::string>, std::vector<GgufArray>, std::vector<uint64_t>,
                   std::vector<int64_t>, std::vector<double>>;

  GgufArray() = default;  // empty array of uint8
  template <class T>
  explicit GgufArray(std::vector<T> elems) : s_(std::in_place_type<std::vector<T>>, std::move(elems)) {}
  explicit GgufArray(Storage s) : s_(std::move(s)) {}
  // An empty array of the given element type.
  static GgufArray empty(GgufType elem_type);

  GgufType elem_type() const { return static_cast<GgufType>(s_.index()); }
  uint64_t size() const;
  // The elements when they are of type T, else nullptr.
  template <class T>
  const std::vector<T>* get() const {
    return std::get_if<std::vector<T>>(&s_);
  }
  const Storage& storage() const { return s_; }

  // "array[uint32]", "array[array[string]]". An array of arrays whose elements disagree (or that is
  // empty, so nothing is known below it) is "array[array]".
  std::string type_name() const;
  // 1 for a flat array, 1 + the deepest element for an array of arrays.
  int depth() const;

  friend bool operator==(const GgufArray& a, const GgufArray& b) { return a.s_ == b.s_; }

 private:
  Storage s_;
};

class GgufValue {
 public:
  // Alternative i holds GgufType i.
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;

  GgufValue() = default;  // uint8 0
  // Exact types only (GgufValue(uint32_t{5}) is a uint32; use the named factories to be explicit).
  template <class T>
  requires(kIsGgufScalar<T> || std::is_same_v<T, std::string> ||
           std::is_same_v<T, GgufArray>) explicit GgufValue(T v)
      : s_(std::in_place_type<T>, std::move(v)) {}

  static GgufValue u8(uint8_t v) { return GgufValue(v); }
  static GgufValue i8(int8_t v) { return GgufValue(v); }
  static GgufValue u16(uint16_t v) { return GgufValue(v); }
  static GgufValue i16(int16_t v) { return GgufValue(v); }
  static GgufValue u32(uint32_t v) { return GgufValue(v); }
  static GgufValue i32(int32_t v) { return GgufValue(v); }
  static GgufValue f32(float v) { return GgufValue(v); }
  static GgufValue boolean(bool v) { return GgufValue(v); }
  static GgufValue str(std::string v) { return GgufValue(std::move(v)); }
  static GgufValue array(GgufArray v) { return GgufValue(std::move(v)); }
  template <class T>
  static GgufValue array(std::vector<T> elems) {
    return GgufValue(GgufArray(std::move(elems)));
  }
  static GgufValue u64(uint64_t v) { return GgufValue(v); }
  static GgufValue i64(int64_t v) { return GgufValue(v); }
  static GgufValue f64(double v) { return GgufValue(v); }

  GgufType type() const { return static_cast<GgufType>(s_.index()); }
  // The value when it is of type T, else nullptr.
  template <class T>
  const T* get() const {
    return std::get_if<T>(&s_);
  }
  const Storage& storage() const { return s_; }

  // "uint32", "string", "array[float32]", "array[array[int8]]".
  std::string type_name() const;

  friend bool operator==(const GgufValue& a, const GgufValue& b) { return a.s_ == b.s_; }

 private:
  Storage s_;
};

}  // namespace qe
