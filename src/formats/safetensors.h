// Hugging Face safetensors reader: u64 little-endian header length N, N bytes of JSON
// ({"__metadata__": {str: str}, "NAME": {"dtype", "shape", "data_offsets": [begin, end]}}), then the data
// section that the tensors must cover exactly (no holes, no overlaps, nothing after the last tensor).
// Files are hostile: every length, offset and JSON type is checked before a span is handed out, and every
// problem is an Error naming the file and the tensor or field. Tensor bytes stay in the map (zero copy).
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
#include "formats/mapped_file.h"

namespace qe {

// The safetensors reference rejects headers above 100 MB (MAX_HEADER_SIZE in safetensors/src/tensor.rs).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// __metadata__: free-form string -> string map (sorted by key; the format gives it no order).
using SafetensorsMetadata = std::map<std::string, std::string, std::less<>>;

// The three element types the converter reads. Every other dtype is kept by name only.
enum class SafetensorsFloatType : uint8_t { F32, F16, BF16 };

// Bits per element of a dtype name as the format spells it ("F32", "BF16", "F8_E4M3", "F4", ...);
// nullopt for a name the format does not define. Sub-byte types (F4, F6_*) make a tensor whose bit count
// is not a multiple of 8 invalid, as in the reference.
std::optional<uint32_t> safetensors_dtype_bits(std::string_view dtype);
std::optional<SafetensorsFloatType> safetensors_float_type(std::string_view dtype);
std::string_view safetensors_float_type_name(SafetensorsFloatType type);

struct SafetensorsTensor {
  std::string name;
  std::string dtype;                               // as in the file: "F32", "BF16", "I64", ...
  std::vector<uint64_t> shape;                     // as in the file, outermost first; [] is a scalar
  uint64_t offset = 0;                             // absolute offset of the first byte in the file
  uint64_t size = 0;                               // bytes (0 for a tensor with a zero dimension)
  std::optional<SafetensorsFloatType> float_type;  // set for F32, F16, BF16
  std::span<const std::byte> data;                 // view into the file's bytes
};

// A tensor whose dtype is one the converter reads.
struct FloatTensorView {
  std::string_view name;
  SafetensorsFloatType type;
  std::span<const uint64_t> shape;  // outermost first
  std::span<const std::byte> data;
};

// "[576, 64]"; "[]" for a scalar.
std::string format_shape(std::span<const uint64_t> shape);

class SafetensorsFile {
 public:
  // Maps and parses `path`; the map lives as long as the SafetensorsFile (moving it keeps spans valid).
  static Result<SafetensorsFile> open(const std::string& path);
  // Parses bytes the caller keeps alive for as long as the result is used; errors name `name_for_errors`.
  static Result<SafetensorsFile> parse(std::span<const std::byte> bytes, std::string name_for_errors);

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // The path given to open() or the name given to parse().
  const std::string& name() const { return name_; }
  // In data-section order: the header's order for every writer we know (the reference sorts by offset).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsMetadata& metadata() const { return metadata_; }
  uint64_t header_bytes() const { return header_bytes_; }  // N, the JSON header's length (with padding)
  uint64_t data_offset() const { return 8 + header_bytes_; }
  uint64_t file_size() const { return file_size_; }

  // nullptr when absent.
  const SafetensorsTensor* find(std::string_view tensor_name) const;
  // The tensor if its dtype is F32, F16 or BF16; otherwise an Error naming the dtype
  // ("tensor x: dtype I64 is not supported (F32, F16, BF16 are)"), or naming the missing tensor.
  Result<FloatTensorView> float_tensor(std::string_view tensor_name) const;

 private:
  SafetensorsFile() = default;

  std::string name_;
  MappedFile map_;  // empty for parse()
  uint64_t header_bytes_ = 0;
  uint64_t file_size_ = 0;
  SafetensorsMetadata metadata_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Shared by SafetensorsFile and HfModelDir: the Error for a tensor that is not F32/F16/BF16.
Result<FloatTensorView> float_tensor_view(const SafetensorsTensor& tensor, const std::string& file);

}  // namespace qe
