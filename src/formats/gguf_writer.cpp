#include "formats/gguf_writer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>
#include <cstring>
#include <limits>
#include <utility>

namespace qe {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

namespace {

constexpr uint32_t kVersion = 3;
constexpr size_t kGgmlMaxName = 64;  // llama.cpp refuses tensor names of this length or more

template <class T>
void put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<std::byte>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

void encode_array(const GgufArray& a, std::vector<std::byte>& out) {
  put<uint32_t>(out, static_cast<uint32_t>(a.elem_type()));
  put<uint64_t>(out, a.size());
  std::visit(
      [&](const auto& v) {
        using E = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<E, bool>) {
          for (bool b : v) put<uint8_t>(out, b ? 1 : 0);
        } else if constexpr (std::is_same_v<E, std::string>) {
          for (const std::string& s : v) put_string(out, s);
        } else if constexpr (std::is_same_v<E, GgufArray>) {
          for (const GgufArray& inner : v) encode_array(inner, out);
        } else {
          const auto* p = reinterpret_cast<const std::byte*>(v.data());
          out.insert(out.end(), p, p + v.size() * sizeof(E));
        }
      },
      a.storage());
}

std::string clip(std::string_view name) {
  constexpr size_t kMax = 96;
  if (name.size() <= kMax) return std::string(name);
  return fmt::format("{}...({} bytes)", name.substr(0, kMax), name.size());
}

}  // namespace

void gguf_encode_value(const GgufValue& value, std::vector<std::byte>& out) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          put<uint8_t>(out, x ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::string>) {
          put_string(out, x);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          encode_array(x, out);
        } else {
          put<T>(out, x);
        }
      },
      value.storage());
}

Error GgufWriter::error(std::string field, std::string reason) const {
  return Error{path_, std::move(field), std::move(reason)};
}

Status GgufWriter::fail(Error e) {
  out_.reset();  // AtomicFile's destructor removes the temporary
  state_ = State::kFailed;
  return e;
}

Status GgufWriter::set(std::string key, GgufValue value) {
  if (state_ != State::kDeclaring) return error("key " + clip(key), "metadata set after open()");
  if (key.empty()) return error("metadata", "empty key");
  const std::string field = "key " + clip(key);
  if (kv_names_.contains(key)) return error(field, "duplicate key");
  if (const GgufArray* a = value.get<GgufArray>(); a != nullptr && a->depth() > kGgufMaxArrayDepth)
    return error(
        field, fmt::format("arrays nested {} deep, at most {} are allowed", a->depth(), kGgufMaxArrayDepth));
  if (key == "general.alignment") {
    const uint32_t* a = value.get<uint32_t>();
    if (a == nullptr) return error(field, fmt::format("type is {}, expected uint32", value.type_name()));
    if (*a == 0 || !std::has_single_bit(*a))
      return error(field, fmt::format("alignment {} is not a non-zero power of two", *a));
    alignment_ = *a;
  }
  kv_names_.insert(key);
  kvs_.push_back({std::move(key), std::move(value)});
  return {};
}

Status GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims) {
  const std::string field = "tensor " + clip(name);
  if (state_ != State::kDeclaring) return error(field, "declared after open()");
  if (name.empty()) return error("tensor", "empty tensor name");
  if (name.size() >= kGgmlMaxName)
    return error(field,
                 fmt::format("name is {} bytes; llama.cpp allows at most {}", name.size(), kGgmlMaxName - 1));
  if (tensor_names_.contains(name)) return error(field, "duplicate tensor name");
  const std::optional<GgmlTypeInfo> info = ggml_type_info(static_cast<uint32_t>(type));
  if (!info) return error(field, fmt::format("unknown type {}", static_cast<uint32_t>(type)));
  if (dims.empty() || dims.size() > kGgufMaxDims)
    return error(field, fmt::format("{} dims, expected 1 to {}", dims.size(), kGgufMaxDims));
  uint64_t n = 1;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] == 0) return error(field, fmt::format("dim {} is 0", d));
    if (__builtin_mul_overflow(n, dims[d], &n) ||
        n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return error(field, "element count overflows");
  }
  if (dims[0] % info->block_size != 0)
    return error(field, fmt::format("row length {} is not a multiple of the {} block size {}", dims[0],
                                    info->name, info->block_size));
  GgufTensorInfo t;
  if (__builtin_mul_overflow(n / info->block_size, uint64_t{info->type_size}, &t.n_bytes))
    return error(field, "byte size overflows");
  t.name = std::move(name);
  t.type = type;
  t.dims = std::move(dims);
  t.n_elements = n;
  tensor_names_.insert(t.name);
  tensors_.push_back(std::move(t));
  return {};
}

Status GgufWriter::open(const std::string& path, bool overwrite) {
  if (state_ != State::kDeclaring) return error("", "open() called twice");
  path_ = path;

  // Offsets first: the tensor infos carry them.
  uint64_t offset = 0;
  for (GgufTensorInfo& t : tensors_) {
    offset = (offset + alignment_ - 1) / alignment_ * alignment_;
    t.offset = offset;
    if (__builtin_add_overflow(offset, t.n_bytes, &offset))
      return error("tensor " + clip(t.name), "file too large");
  }

  std::vector<std::byte> head;
  put<uint32_t>(head, 0x46554747);  // "GGUF"
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kvs_.size());
  for (const GgufKv& kv : kvs_) {
    put_string(head, kv.key);
    put<uint32_t>(head, static_cast<uint32_t>(kv.value.type()));
    gguf_encode_value(kv.value, head);
  }
  for (const GgufTensorInfo& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(head, d);
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, t.offset);
  }
  data_offset_ = (head.size() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensorInfo& t : tensors_) t.file_offset = data_offset_ + t.offset;

  Result<AtomicFile> f = AtomicFile::create(path, overwrite);
  if (!f) return fail(f.error());
  out_.emplace(std::move(*f));
  if (Status s = out_->write(head.data(), head.size()); !s) return fail(s.error());
  if (Status s = out_->pad_to(alignment_); !s) return fail(s.error());
  QE_CHECK(out_->offset() == data_offset_);
  state_ = State::kWriting;
  next_ = 0;
  next_done_ = 0;
  return {};
}

Status GgufWriter::check_writing(std::string_view name) {
  const std::string field = "tensor " + clip(name);
  if (state_ == State::kDeclaring) return error(field, "tensor data written before open()");
  if (state_ == State::kDone) return error(field, "tensor data written after finish()");
  if (state_ == State::kFailed) return error(field, "the writer already failed");
  if (next_ < tensors_.size() && next_done_ == tensors_[next_].n_bytes) {
    ++next_;  // the previous tensor is complete; move on
    next_done_ = 0;
  }
  if (next_ >= tensors_.size()) return fail(error(field, "more tensor data than declared tensors"));
  const GgufTensorInfo& t = tensors_[next_];
  if (t.name != name) {
    if (next_done_ > 0)
      return fail(error("tensor " + clip(t.name), fmt::format("only {} of {} bytes written before tensor {}",
                                                              next_done_, t.n_bytes, clip(name))));
    return fail(error(field, fmt::format("written out of order: expected tensor {} next", clip(t.name))));
  }
  return {};
}

Status GgufWriter::write_tensor_chunk(std::string_view name, std::span<const std::byte> data) {
  if (Status s = check_writing(name); !s) return s;
  const GgufTensorInfo& t = tensors_[next_];
  if (data.size() > t.n_bytes - next_done_)
    return fail(error(
        "tensor " + clip(t.name),
        fmt::format("{} bytes given, only {} of its {} bytes ({} {}) remain", data.size(),
                    t.n_bytes - next_done_, t.n_bytes, ggml_type_name(t.type), fmt::join(t.dims, "x"))));
  if (next_done_ == 0) {
    if (Status s = out_->pad_to(alignment_); !s) return fail(s.error());
    QE_CHECK(out_->offset() == t.file_offset);
  }
  if (Status s = out_->write(data.data(), data.size()); !s) return fail(s.error());
  next_done_ += data.size();
  return {};
}

Status GgufWriter::write_tensor(std::string_view name, std::span<const std::byte> data) {
  if (Status s = check_writing(name); !s) return s;
  const GgufTensorInfo& t = tensors_[next_];
  if (next_done_ != 0 || data.size() != t.n_bytes)
    return fail(error("tensor " + clip(t.name),
                      fmt::format("{} bytes given, expected {} ({} {})", data.size(), t.n_bytes,
                                  ggml_type_name(t.type), fmt::join(t.dims, "x"))));
  return write_tensor_chunk(name, data);
}

Status GgufWriter::finish() {
  if (state_ != State::kWriting) {
    if (state_ == State::kDeclaring) return error("", "finish() before open()");
    return error("", state_ == State::kDone ? "finish() called twice" : "the writer already failed");
  }
  if (next_ < tensors_.size() && next_done_ == tensors_[next_].n_bytes) {
    ++next_;
    next_done_ = 0;
  }
  if (next_ < tensors_.size()) {
    const GgufTensorInfo& t = tensors_[next_];
    return fail(
        error("tensor " + clip(t.name), fmt::format("only {} of {} bytes written ({} of {} tensors complete)",
                                                    next_done_, t.n_bytes, next_, tensors_.size())));
  }
  // Pad the end too, as ggml and gguf-py do, so concatenated reads of the last tensor stay in bounds.
  if (Status s = out_->pad_to(alignment_); !s) return fail(s.error());
  if (Status s = out_->commit(); !s) return fail(s.error());
  out_.reset();
  state_ = State::kDone;
  return {};
}

}  // namespace qe
