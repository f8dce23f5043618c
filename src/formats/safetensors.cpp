#include "formats/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "formats/safetensors_json.h"

namespace qe {
namespace {

struct DtypeInfo {
  std::string_view name;
  uint32_t bits;
};

// Every dtype of the safetensors reference (safetensors/src/tensor.rs, enum Dtype, 0.8).
constexpr std::array<DtypeInfo, 22> kDtypes{{
    {"BOOL", 8},    {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6},     {"U8", 8},          {"I8", 8},
    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},
    {"U16", 16},    {"F16", 16},    {"BF16", 16},   {"I32", 32},        {"U32", 32},        {"F32", 32},
    {"C64", 64},    {"F64", 64},    {"I64", 64},    {"U64", 64},
}};

const char* json_type_name(const nlohmann::ordered_json& j) {
  if (j.is_number_integer() && !j.is_number_unsigned()) return "a negative integer";
  if (j.is_number_float()) return "a non-integer number";
  return j.type_name();  // "object", "array", "string", "boolean", "null", "number"
}

// Non-negative JSON integer (not 1.0, not -3, not 1e3 which nlohmann reads as a float).
std::optional<uint64_t> as_u64(const nlohmann::ordered_json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

struct Entry {
  size_t header_index;  // position in the header, to keep ties (empty tensors) in header order
  uint64_t begin, end;  // relative to the data section
  SafetensorsTensor tensor;
};

Result<Entry> parse_entry(const std::string& file, const std::string& name, const nlohmann::ordered_json& v,
                          uint64_t data_size) {
  const std::string field = "tensor " + name;
  auto err = [&](std::string reason) { return Error{file, field, std::move(reason)}; };
  if (!v.is_object()) return err(fmt::format("entry must be an object, got {}", json_type_name(v)));
  // Other keys are ignored, as the reference does.
  auto dt = v.find("dtype");
  auto sh = v.find("shape");
  auto off = v.find("data_offsets");
  if (dt == v.end()) return err("missing \"dtype\"");
  if (sh == v.end()) return err("missing \"shape\"");
  if (off == v.end()) return err("missing \"data_offsets\"");
  if (!dt->is_string()) return err(fmt::format("\"dtype\" must be a string, got {}", json_type_name(*dt)));

  Entry e;
  SafetensorsTensor& t = e.tensor;
  t.name = name;
  t.dtype = dt->get<std::string>();
  auto bits = safetensors_dtype_bits(t.dtype);
  if (!bits) return err(fmt::format("unknown dtype \"{}\"", t.dtype));
  t.float_type = safetensors_float_type(t.dtype);

  if (!sh->is_array()) return err(fmt::format("\"shape\" must be an array, got {}", json_type_name(*sh)));
  t.shape.reserve(sh->size());
  for (size_t i = 0; i < sh->size(); ++i) {
    auto d = as_u64((*sh)[i]);
    if (!d) {
      return err(fmt::format("shape[{}] must be a non-negative integer, got {}", i,
                             (*sh)[i].is_number() ? (*sh)[i].dump() : json_type_name((*sh)[i])));
    }
    t.shape.push_back(*d);
  }

  if (!off->is_array() || off->size() != 2)
    return err(fmt::format("\"data_offsets\" must be [begin, end], got {}", off->dump()));
  auto begin = as_u64((*off)[0]);
  auto end = as_u64((*off)[1]);
  if (!begin || !end)
    return err(fmt::format("\"data_offsets\" must be two non-negative integers, got {}", off->dump()));
  e.begin = *begin;
  e.end = *end;
  if (e.begin > e.end) return err(fmt::format("data_offsets [{}, {}]: begin is after end", e.begin, e.end));

  // Element count then bits, overflow-checked in the reference's order (a leading 0 short-circuits).
  uint64_t count = 1;
  for (uint64_t d : t.shape) {
    if (__builtin_mul_overflow(count, d, &count))
      return err(fmt::format("shape {} has more than 2^64 elements", format_shape(t.shape)));
  }
  uint64_t total_bits = 0;
  if (__builtin_mul_overflow(count, uint64_t{*bits}, &total_bits))
    return err(fmt::format("shape {} x {} overflows 64 bits", format_shape(t.shape), t.dtype));
  if (total_bits % 8 != 0) {
    return err(fmt::format("shape {} x {} is {} bits, not a whole number of bytes", format_shape(t.shape),
                           t.dtype, total_bits));
  }
  uint64_t bytes = total_bits / 8;
  if (e.end - e.begin != bytes) {
    return err(fmt::format("data_offsets [{}, {}] do not match shape {} x {} ({} bytes)", e.begin, e.end,
                           format_shape(t.shape), t.dtype, bytes));
  }
  if (e.end > data_size) {
    return err(fmt::format("data_offsets [{}, {}] run past the end of the data section ({} bytes)", e.begin,
                           e.end, data_size));
  }
  t.size = bytes;
  return e;
}

}  // namespace

std::optional<uint32_t> safetensors_dtype_bits(std::string_view dtype) {
  for (const DtypeInfo& d : kDtypes)
    if (d.name == dtype) return d.bits;
  return std::nullopt;
}

std::optional<SafetensorsFloatType> safetensors_float_type(std::string_view dtype) {
  if (dtype == "F32") return SafetensorsFloatType::F32;
  if (dtype == "F16") return SafetensorsFloatType::F16;
  if (dtype == "BF16") return SafetensorsFloatType::BF16;
  return std::nullopt;
}

std::string_view safetensors_float_type_name(SafetensorsFloatType type) {
  switch (type) {
    case SafetensorsFloatType::F32:
      return "F32";
    case SafetensorsFloatType::F16:
      return "F16";
    case SafetensorsFloatType::BF16:
      return "BF16";
  }
  QE_CHECK(false);
}

std::string format_shape(std::span<const uint64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto map = MappedFile::open(path);
  if (!map) return map.error();
  auto file = parse(map->bytes(), path);
  if (!file) return file.error();
  file->map_ = std::move(*map);  // the spans point into the mapping, which does not move
  return file;
}

Result<SafetensorsFile> SafetensorsFile::parse(std::span<const std::byte> bytes,
                                               std::string name_for_errors) {
  const std::string& file = name_for_errors;
  const uint64_t size = bytes.size();
  if (size < 8)
    return Error{file, "header",
                 fmt::format("file is {} bytes, too short for the 8-byte header length", size)};
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  if (n > kSafetensorsMaxHeaderBytes)
    return Error{file, "header",
                 fmt::format("header length {} is above the {}-byte limit", n, kSafetensorsMaxHeaderBytes)};
  if (n > size - 8)
    return Error{file, "header",
                 fmt::format("header length {} runs past the end of the file ({} bytes)", n, size)};
  std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<size_t>(n));
  // The spec: "The header data MUST begin with a { character" (it may be padded with trailing spaces).
  if (text.empty() || text.front() != '{')
    return Error{file, "header", "JSON header does not start with '{'"};
  // A valid header nests 3 deep (root, tensor entry, shape); deeper JSON can only be in ignored keys.
  auto header = parse_ordered_json_strict(text, file, "header", 64);
  if (!header) return header.error();
  if (!header->is_object())
    return Error{file, "header", fmt::format("JSON header must be an object, got {}", header->type_name())};

  SafetensorsFile out;
  out.name_ = std::move(name_for_errors);
  out.header_bytes_ = n;
  out.file_size_ = size;
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;

  std::vector<Entry> entries;
  entries.reserve(header->size());
  for (const auto& [key, value] : header->items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // the reference reads it as an absent Option
      if (!value.is_object())
        return Error{out.name_, "__metadata__",
                     fmt::format("must be an object, got {}", json_type_name(value))};
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return Error{out.name_, "__metadata__." + mk,
                       fmt::format("value must be a string, got {}", json_type_name(mv))};
        }
        out.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    auto e = parse_entry(out.name_, key, value, data_size);
    if (!e) return e.error();
    e->header_index = entries.size();
    entries.push_back(std::move(*e));
  }

  // The data section must be covered exactly: sorted by offsets, each tensor starts where the previous
  // one ended (no hole: the spec forbids them to prevent polyglot files; no overlap), and the last ends at
  // the end of the file.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.header_index) < std::tie(b.begin, b.end, b.header_index);
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < expected) {
      return Error{out.name_, "tensor " + e.tensor.name,
                   fmt::format("data_offsets [{}, {}] overlap tensor {} (data_offsets [{}, {}])", e.begin,
                               e.end, prev->tensor.name, prev->begin, prev->end)};
    }
    if (e.begin > expected) {
      return Error{
          out.name_, "tensor " + e.tensor.name,
          fmt::format("data_offsets [{}, {}] leave a hole: bytes [{}, {}) of the data section belong "
                      "to no tensor",
                      e.begin, e.end, expected, e.begin)};
    }
    expected = e.end;
    prev = &e;
  }
  if (expected != data_size) {
    return Error{out.name_, "data",
                 fmt::format("bytes [{}, {}) at the end of the data section belong to no tensor", expected,
                             data_size)};
  }

  out.tensors_.reserve(entries.size());
  for (Entry& e : entries) {
    SafetensorsTensor& t = e.tensor;
    t.offset = data_start + e.begin;
    t.data = bytes.subspan(static_cast<size_t>(t.offset), static_cast<size_t>(t.size));
    out.index_.emplace(t.name, out.tensors_.size());
    out.tensors_.push_back(std::move(t));
  }
  return out;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view tensor_name) const {
  auto it = index_.find(tensor_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<FloatTensorView> SafetensorsFile::float_tensor(std::string_view tensor_name) const {
  const SafetensorsTensor* t = find(tensor_name);
  if (!t) return Error{name_, "tensor " + std::string(tensor_name), "not in the file"};
  return float_tensor_view(*t, name_);
}

Result<FloatTensorView> float_tensor_view(const SafetensorsTensor& tensor, const std::string& file) {
  if (!tensor.float_type) {
    return Error{file, "tensor " + tensor.name,
                 fmt::format("dtype {} is not supported (F32, F16, BF16 are)", tensor.dtype)};
  }
  return FloatTensorView{tensor.name, *tensor.float_type, tensor.shape, tensor.data};
}

}  // namespace qe
