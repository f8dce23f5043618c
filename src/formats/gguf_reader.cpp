#include "formats/gguf_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

namespace qe {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr size_t kMaxNameInError = 96;   // a hostile name must not make a megabyte error line

// Smallest encodings, used to bound counts by the bytes left before reserving anything.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;                  // key length, 1-byte key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, one dim, type, offset

uint64_t elem_min_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
      return 8;
    case GgufType::STRING:
      return 8;  // the length; the bytes may be empty
    case GgufType::ARRAY:
      return 4 + 8;  // element type and count; may be empty
  }
  return 1;
}

std::string clip(std::string_view name) {
  if (name.size() <= kMaxNameInError) return std::string(name);
  return fmt::format("{}...({} bytes)", name.substr(0, kMaxNameInError), name.size());
}

}  // namespace

// Walks the bytes once, front to back. Every read is bounds-checked against the span.
class GgufParser {
 public:
  GgufParser(std::span<const std::byte> bytes, const std::string& name) : b_(bytes), name_(name) {}

  Result<GgufFile> run();

 private:
  uint64_t left() const { return b_.size() - pos_; }
  Error err(std::string field, std::string reason) const {
    return Error{name_, std::move(field), std::move(reason)};
  }
  std::string here() const { return fmt::format("offset {}", pos_); }

  // Reads a little-endian scalar; `what` names it in the truncation error.
  template <class T>
  Status read(T& out, const std::string& field, std::string_view what) {
    if (left() < sizeof(T))
      return err(field, fmt::format("file truncated: {} needs {} bytes at offset {}, {} left", what,
                                    sizeof(T), pos_, left()));
    std::memcpy(&out, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }
  Status read_string(std::string& out, const std::string& field, std::string_view what);
  Status check_count(uint64_t count, uint64_t min_bytes_each, const std::string& field,
                     std::string_view what);

  Status read_value(GgufType type, int depth, GgufValue& out, const std::string& field);
  Status read_array(int depth, GgufArray& out, const std::string& field);
  template <class T>
  Status read_scalars(uint64_t n, std::vector<T>& out, const std::string& field);
  Status read_bool(bool& out, const std::string& field);

  Status read_header(GgufFile& f, uint64_t& n_tensors, uint64_t& n_kv);
  Status read_metadata(GgufFile& f, uint64_t n_kv);
  Status read_tensor_info(GgufFile& f, uint64_t index);
  Status place_tensors(GgufFile& f);

  std::span<const std::byte> b_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

Status GgufParser::read_string(std::string& out, const std::string& field, std::string_view what) {
  uint64_t len = 0;
  const uint64_t at = pos_;
  if (Status s = read(len, field, fmt::format("{} length", what)); !s) return s;
  if (len > left())
    return err(field,
               fmt::format("{} length {} at offset {} exceeds the {} bytes left", what, len, at, left()));
  out.assign(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(len));
  pos_ += len;
  return {};
}

Status GgufParser::check_count(uint64_t count, uint64_t min_bytes_each, const std::string& field,
                               std::string_view what) {
  if (count > left() / min_bytes_each)
    return err(field,
               fmt::format("{} {} cannot fit in the {} bytes left at offset {} (each needs at least {})",
                           what, count, left(), pos_, min_bytes_each));
  return {};
}

Status GgufParser::read_bool(bool& out, const std::string& field) {
  uint8_t raw = 0;
  const uint64_t at = pos_;
  if (Status s = read(raw, field, "bool"); !s) return s;
  // The spec: "0 is false and 1 is true. Anything else is invalid".
  if (raw > 1) return err(field, fmt::format("bool at offset {} is {}, expected 0 or 1", at, raw));
  out = raw == 1;
  return {};
}

template <class T>
Status GgufParser::read_scalars(uint64_t n, std::vector<T>& out, const std::string& field) {
  // check_count already bounded n * sizeof(T) by the bytes left.
  out.resize(static_cast<size_t>(n));
  if (n == 0) return {};  // an empty vector's data() may be null, which memcpy must not get
  std::memcpy(out.data(), b_.data() + pos_, static_cast<size_t>(n) * sizeof(T));
  pos_ += n * sizeof(T);
  return {};
}

Status GgufParser::read_array(int depth, GgufArray& out, const std::string& field) {
  if (depth > kGgufMaxArrayDepth)
    return err(field,
               fmt::format("arrays nested deeper than {} levels at offset {}", kGgufMaxArrayDepth, pos_));
  uint32_t raw_type = 0;
  uint64_t n = 0;
  const uint64_t at = pos_;
  if (Status s = read(raw_type, field, "array element type"); !s) return s;
  if (!gguf_type_valid(raw_type))
    return err(field, fmt::format("array at offset {} has unknown element type {}", at, raw_type));
  if (Status s = read(n, field, "array length"); !s) return s;
  const auto type = static_cast<GgufType>(raw_type);
  if (Status s =
          check_count(n, elem_min_bytes(type), field, fmt::format("array[{}] length", gguf_type_name(type)));
      !s)
    return s;

  GgufArray::Storage st = GgufArray::empty(type).storage();
  Status s = std::visit(
      [&](auto& v) -> Status {
        using E = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<E, bool>) {
          v.resize(static_cast<size_t>(n));
          for (uint64_t i = 0; i < n; ++i) {
            bool x = false;
            if (Status r = read_bool(x, field); !r) return r;
            v[i] = x;
          }
          return {};
        } else if constexpr (std::is_same_v<E, std::string>) {
          v.resize(static_cast<size_t>(n));
          for (uint64_t i = 0; i < n; ++i)
            if (Status r = read_string(v[i], field, "array element string"); !r) return r;
          return {};
        } else if constexpr (std::is_same_v<E, GgufArray>) {
          v.resize(static_cast<size_t>(n));
          for (uint64_t i = 0; i < n; ++i)
            if (Status r = read_array(depth + 1, v[i], field); !r) return r;
          return {};
        } else {
          return read_scalars(n, v, field);
        }
      },
      st);
  if (!s) return s;
  out = GgufArray(std::move(st));
  return {};
}

Status GgufParser::read_value(GgufType type, int depth, GgufValue& out, const std::string& field) {
  auto scalar = [&](auto zero) -> Status {
    using T = decltype(zero);
    T x{};
    if (Status s = read(x, field, gguf_type_name(type)); !s) return s;
    out = GgufValue(x);
    return {};
  };
  switch (type) {
    case GgufType::UINT8:
      return scalar(uint8_t{});
    case GgufType::INT8:
      return scalar(int8_t{});
    case GgufType::UINT16:
      return scalar(uint16_t{});
    case GgufType::INT16:
      return scalar(int16_t{});
    case GgufType::UINT32:
      return scalar(uint32_t{});
    case GgufType::INT32:
      return scalar(int32_t{});
    case GgufType::FLOAT32:
      return scalar(float{});
    case GgufType::UINT64:
      return scalar(uint64_t{});
    case GgufType::INT64:
      return scalar(int64_t{});
    case GgufType::FLOAT64:
      return scalar(double{});
    case GgufType::BOOL: {
      bool x = false;
      if (Status s = read_bool(x, field); !s) return s;
      out = GgufValue(x);
      return {};
    }
    case GgufType::STRING: {
      std::string x;
      if (Status s = read_string(x, field, "string"); !s) return s;
      out = GgufValue(std::move(x));
      return {};
    }
    case GgufType::ARRAY: {
      GgufArray a;
      if (Status s = read_array(depth + 1, a, field); !s) return s;
      out = GgufValue(std::move(a));
      return {};
    }
  }
  QE_CHECK(false);  // callers validate the type id
  return {};
}

Status GgufParser::read_header(GgufFile& f, uint64_t& n_tensors, uint64_t& n_kv) {
  uint32_t magic = 0;
  if (Status s = read(magic, "header", "magic"); !s) return s;
  if (magic != kMagic) {
    std::string shown;
    for (size_t i = 0; i < 4; ++i) {
      const auto c = static_cast<unsigned char>(b_[i]);
      shown +=
          (c >= 0x20 && c < 0x7f) ? fmt::format("{}", static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
    }
    return err("header", fmt::format("bad magic \"{}\", expected \"GGUF\" (not a GGUF file)", shown));
  }
  uint32_t version = 0;
  if (Status s = read(version, "header", "version"); !s) return s;
  // A big-endian file's version reads as 0x0N000000 here: the low 16 bits are zero.
  if ((version & 0xffffu) == 0 && version != 0)
    return err("header",
               fmt::format("big-endian GGUF (version {} byte-swapped); only little-endian files are "
                           "supported",
                           __builtin_bswap32(version)));
  if (version == 1)
    return err("header", "GGUF version 1 is not supported (it used 32-bit counts; re-convert the model)");
  if (version < 2 || version > 3)
    return err("header", fmt::format("GGUF version {} is not supported (2 and 3 are)", version));
  f.version_ = version;
  if (Status s = read(n_tensors, "header", "tensor count"); !s) return s;
  if (Status s = read(n_kv, "header", "metadata count"); !s) return s;
  if (Status s = check_count(n_kv, kMinKvBytes, "header", "metadata count"); !s) return s;
  // Tensor infos follow the metadata, so this bound is loose but still caps the reservation.
  if (Status s = check_count(n_tensors, kMinTensorInfoBytes, "header", "tensor count"); !s) return s;
  return {};
}

Status GgufParser::read_metadata(GgufFile& f, uint64_t n_kv) {
  f.kvs_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string at = here();
    GgufKv kv;
    if (Status s = read_string(kv.key, at, fmt::format("metadata key {}", i)); !s) return s;
    if (kv.key.empty()) return err(at, fmt::format("metadata key {} is empty", i));
    const std::string field = "key " + clip(kv.key);
    if (f.kv_index_.contains(kv.key)) return err(field, fmt::format("duplicate key (again at {})", at));
    uint32_t raw_type = 0;
    const uint64_t type_at = pos_;
    if (Status s = read(raw_type, field, "value type"); !s) return s;
    if (!gguf_type_valid(raw_type))
      return err(field, fmt::format("unknown value type {} at offset {}", raw_type, type_at));
    if (Status s = read_value(static_cast<GgufType>(raw_type), 0, kv.value, field); !s) return s;

    if (kv.key == "general.alignment") {
      const uint32_t* a = kv.value.get<uint32_t>();
      if (a == nullptr) return err(field, fmt::format("type is {}, expected uint32", kv.value.type_name()));
      if (*a == 0 || !std::has_single_bit(*a))
        return err(field, fmt::format("alignment {} is not a non-zero power of two", *a));
      f.alignment_ = *a;
    }
    f.kv_index_.emplace(kv.key, f.kvs_.size());
    f.kvs_.push_back(std::move(kv));
  }
  return {};
}

Status GgufParser::read_tensor_info(GgufFile& f, uint64_t index) {
  const std::string at = here();
  GgufTensorInfo t;
  if (Status s = read_string(t.name, at, fmt::format("tensor {} name", index)); !s) return s;
  if (t.name.empty()) return err(at, fmt::format("tensor {} has an empty name", index));
  const std::string field = "tensor " + clip(t.name);
  if (f.tensor_index_.contains(t.name))
    return err(field, fmt::format("duplicate tensor name (again at {})", at));

  uint32_t n_dims = 0;
  if (Status s = read(n_dims, field, "n_dims"); !s) return s;
  if (n_dims == 0 || n_dims > kGgufMaxDims)
    return err(field, fmt::format("n_dims is {}, expected 1 to {}", n_dims, kGgufMaxDims));
  t.dims.resize(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) {
    if (Status s = read(t.dims[d], field, fmt::format("dim {}", d)); !s) return s;
    if (t.dims[d] == 0) return err(field, fmt::format("dim {} is 0", d));
  }
  uint32_t raw_type = 0;
  if (Status s = read(raw_type, field, "type"); !s) return s;
  if (raw_type >= kGgmlTypeCount) return err(field, fmt::format("type {} is out of range", raw_type));
  const std::optional<GgmlTypeInfo> info = ggml_type_info(raw_type);
  if (!info) return err(field, fmt::format("type {} was removed from ggml and is not supported", raw_type));
  t.type = static_cast<GgmlType>(raw_type);
  if (Status s = read(t.offset, field, "data offset"); !s) return s;

  if (t.dims[0] % info->block_size != 0)
    return err(field, fmt::format("row length {} is not a multiple of the {} block size {}", t.dims[0],
                                  info->name, info->block_size));
  // ggml counts elements in int64_t; anything larger cannot be a real tensor.
  uint64_t n = 1;
  for (uint64_t d : t.dims)
    if (__builtin_mul_overflow(n, d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return err(field, fmt::format("element count overflows ({} dims)", n_dims));
  t.n_elements = n;
  if (__builtin_mul_overflow(n / info->block_size, uint64_t{info->type_size}, &t.n_bytes))
    return err(field, "byte size overflows");
  if (t.offset % f.alignment_ != 0)
    return err(field, fmt::format("offset {} is not aligned to {}", t.offset, f.alignment_));

  f.tensor_index_.emplace(t.name, f.tensors_.size());
  f.tensors_.push_back(std::move(t));
  return {};
}

Status GgufParser::place_tensors(GgufFile& f) {
  // The data section starts at the first aligned offset after the tensor infos. A file with no
  // tensors may end before that padding.
  const uint64_t a = f.alignment_;
  if (pos_ > std::numeric_limits<uint64_t>::max() - (a - 1))
    return err(here(), "data section offset overflows");
  f.data_offset_ = (pos_ + a - 1) / a * a;
  const uint64_t size = b_.size();
  for (GgufTensorInfo& t : f.tensors_) {
    const std::string field = "tensor " + clip(t.name);
    uint64_t end = 0;
    if (__builtin_add_overflow(f.data_offset_, t.offset, &t.file_offset) ||
        __builtin_add_overflow(t.file_offset, t.n_bytes, &end) || end > size)
      return err(field,
                 fmt::format("data (offset {} + {} bytes, data section at {}) runs past the end of the "
                             "file ({} bytes)",
                             t.offset, t.n_bytes, f.data_offset_, size));
    t.data = b_.subspan(static_cast<size_t>(t.file_offset), static_cast<size_t>(t.n_bytes));
  }
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(f.tensors_.size());
  for (const GgufTensorInfo& t : f.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* x, const GgufTensorInfo* y) { return x->offset < y->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& cur = *by_offset[i];
    if (prev.offset + prev.n_bytes > cur.offset)  // both ends were checked to be inside the file
      return err("tensor " + clip(cur.name),
                 fmt::format("data at offset {} overlaps tensor {} (offset {}, {} bytes)", cur.offset,
                             clip(prev.name), prev.offset, prev.n_bytes));
  }
  return {};
}

Result<GgufFile> GgufParser::run() {
  GgufFile f;
  f.name_ = name_;
  f.bytes_ = b_;
  uint64_t n_tensors = 0, n_kv = 0;
  if (Status s = read_header(f, n_tensors, n_kv); !s) return s.error();
  if (Status s = read_metadata(f, n_kv); !s) return s.error();
  if (Status s = check_count(n_tensors, kMinTensorInfoBytes, here(), "tensor count"); !s) return s.error();
  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i)
    if (Status s = read_tensor_info(f, i); !s) return s.error();
  if (Status s = place_tensors(f); !s) return s.error();
  return f;
}

Result<GgufFile> GgufFile::parse(std::span<const std::byte> bytes, std::string name) {
  return GgufParser(bytes, name).run();
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  Result<MappedFile> map = MappedFile::open(path);
  if (!map) return map.error();
  const std::span<const std::byte> bytes = map->bytes();
  Result<GgufFile> f = parse(bytes, path);
  if (!f) return f.error();
  f->map_ = std::move(*map);  // the mapping does not move, so spans into it stay valid
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

bool GgufFile::erase(std::string_view key) {
  auto it = kv_index_.find(key);
  if (it == kv_index_.end()) return false;
  const size_t at = it->second;
  kv_index_.erase(it);
  kvs_.erase(kvs_.begin() + static_cast<std::ptrdiff_t>(at));
  for (auto& [k, i] : kv_index_)
    if (i > at) --i;
  return true;
}

Error GgufFile::missing(std::string_view key) const {
  return Error{name_, "key " + clip(key), "missing"};
}

Error GgufFile::type_error(std::string_view key, const GgufValue& v, const std::string& expected) const {
  return Error{name_, "key " + clip(key), fmt::format("type is {}, expected {}", v.type_name(), expected)};
}

Result<std::string> GgufFile::get_string(std::string_view key) const {
  return get_scalar<std::string>(key);
}

Result<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing(key);
  return std::visit(
      [&](const auto& x) -> Result<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, uint64_t>) {
            if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
              return Error{name_, "key " + clip(key), fmt::format("value {} does not fit in int64", x)};
          }
          return static_cast<int64_t>(x);
        } else {
          return type_error(key, *v, "an integer");
        }
      },
      v->storage());
}

Result<const GgufArray*> GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing(key);
  if (const GgufArray* a = v->get<GgufArray>()) return a;
  return type_error(key, *v, "an array");
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufTensorInfo*> GgufFile::get_tensor(std::string_view name) const {
  if (const GgufTensorInfo* t = find_tensor(name)) return t;
  return Error{name_, "tensor " + clip(name), "missing"};
}

}  // namespace qe
