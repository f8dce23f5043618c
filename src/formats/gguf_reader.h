// GGUF reader (versions 2 and 3, little-endian). The file is hostile until proven otherwise: every
// count and length is checked against the bytes left before anything is allocated, element and byte
// counts are overflow-checked, and tensor data must be aligned, inside the file and non-overlapping.
// Any problem is an Error naming the file and the field ("key general.alignment", "tensor
// blk.0.attn_q.weight", "offset 120"); the reader never aborts on input.
//
// Metadata values are copied out (owning); tensor data is a zero-copy span into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "formats/gguf_value.h"
#include "formats/mapped_file.h"

namespace qe {

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;  // GGML_MAX_DIMS

struct GgufKv {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<uint64_t> dims;       // as on disk: dims[0] is the row length (innermost), 1..4 entries
  uint64_t n_elements = 0;          // product of dims
  uint64_t offset = 0;              // relative to the data section, as on disk
  uint64_t file_offset = 0;         // absolute offset in the file
  uint64_t n_bytes = 0;             // n_elements / block size * type size
  std::span<const std::byte> data;  // the n_bytes at file_offset (valid while the GgufFile lives)

  uint64_t n_rows() const { return n_elements / dims[0]; }
};

class GgufFile {
 public:
  // Maps `path` and parses it; the mapping lives as long as the GgufFile.
  static Result<GgufFile> open(const std::string& path);
  // Parses bytes the caller owns (they must outlive the result). `name` is used in error messages.
  static Result<GgufFile> parse(std::span<const std::byte> bytes, std::string name);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section (aligned)
  std::span<const std::byte> bytes() const { return bytes_; }

  // ---- Metadata, in file order.
  const std::vector<GgufKv>& metadata() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Drops a key and frees its value (false when absent): for an owner that keeps a large value in a
  // form of its own (a model's tokenizer holds the token and merge lists), so it is not held twice.
  bool erase(std::string_view key);

  // Typed look-ups: "key K: missing" or "key K: type is string, expected uint32".
  Result<uint8_t> get_u8(std::string_view key) const { return get_scalar<uint8_t>(key); }
  Result<uint32_t> get_u32(std::string_view key) const { return get_scalar<uint32_t>(key); }
  Result<int32_t> get_i32(std::string_view key) const { return get_scalar<int32_t>(key); }
  Result<uint64_t> get_u64(std::string_view key) const { return get_scalar<uint64_t>(key); }
  Result<int64_t> get_i64(std::string_view key) const { return get_scalar<int64_t>(key); }
  Result<float> get_f32(std::string_view key) const { return get_scalar<float>(key); }
  Result<double> get_f64(std::string_view key) const { return get_scalar<double>(key); }
  Result<bool> get_bool(std::string_view key) const { return get_scalar<bool>(key); }
  Result<std::string> get_string(std::string_view key) const;
  // Any integer type whose value fits in int64 (converters disagree on u32 vs i32 for token ids).
  Result<int64_t> get_int(std::string_view key) const;

  // Array look-ups; the spans live as long as the GgufFile.
  Result<std::span<const std::string>> get_string_array(std::string_view key) const {
    return get_array_of<std::string>(key);
  }
  Result<std::span<const float>> get_f32_array(std::string_view key) const {
    return get_array_of<float>(key);
  }
  Result<std::span<const int32_t>> get_i32_array(std::string_view key) const {
    return get_array_of<int32_t>(key);
  }
  Result<std::span<const uint32_t>> get_u32_array(std::string_view key) const {
    return get_array_of<uint32_t>(key);
  }
  // Any array (e.g. to dump it, or for arrays of arrays).
  Result<const GgufArray*> get_array(std::string_view key) const;

  template <class T>
  requires(!std::is_same_v<T, bool>)  // std::vector<bool> has no contiguous storage
      Result<std::span<const T>> get_array_of(std::string_view key)
  const {
    Result<const GgufArray*> a = get_array(key);
    if (!a) return a.error();
    if (const std::vector<T>* v = (*a)->get<T>()) return std::span<const T>(*v);
    return type_error(key, *find(key), "array[" + std::string(gguf_type_name(gguf_type_of<T>())) + "]");
  }

  // ---- Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;         // nullptr when absent
  Result<const GgufTensorInfo*> get_tensor(std::string_view name) const;  // "tensor N: missing"

 private:
  GgufFile() = default;
  friend class GgufParser;

  template <class T>
  Result<T> get_scalar(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return missing(key);
    if (const T* x = v->get<T>()) return *x;
    return type_error(key, *v, std::string(gguf_type_name(gguf_type_of<T>())));
  }
  Error missing(std::string_view key) const;
  Error type_error(std::string_view key, const GgufValue& v, const std::string& expected) const;

  std::string name_;
  std::optional<MappedFile> map_;  // set by open(); parse() leaves the bytes to the caller
  std::span<const std::byte> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace qe
