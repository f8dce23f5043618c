#include "formats/safetensors_writer.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

namespace qe {

Result<SafetensorsWriter> SafetensorsWriter::create(const std::string& path,
                                                    std::vector<SafetensorsDecl> tensors,
                                                    const SafetensorsMetadata& metadata, bool overwrite) {
  SafetensorsWriter w;
  w.path_ = path;
  w.begins_.reserve(tensors.size());
  w.sizes_.reserve(tensors.size());

  // Header keys in declaration order, so the file's header order is its data order (as the reference's).
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = std::move(md);
  }
  std::unordered_set<std::string_view> names;
  uint64_t offset = 0;
  for (const SafetensorsDecl& d : tensors) {
    const std::string field = "tensor " + d.name;
    if (d.name == "__metadata__") return Error{path, field, "name is reserved for the metadata"};
    if (!names.insert(d.name).second) return Error{path, field, "declared twice"};
    auto bits = safetensors_dtype_bits(d.dtype);
    if (!bits) return Error{path, field, fmt::format("unknown dtype \"{}\"", d.dtype)};
    uint64_t count = 1, total_bits = 0, end = 0;
    for (uint64_t dim : d.shape) {
      if (__builtin_mul_overflow(count, dim, &count))
        return Error{path, field, fmt::format("shape {} has more than 2^64 elements", format_shape(d.shape))};
    }
    if (__builtin_mul_overflow(count, uint64_t{*bits}, &total_bits))
      return Error{path, field,
                   fmt::format("shape {} x {} overflows 64 bits", format_shape(d.shape), d.dtype)};
    if (total_bits % 8 != 0) {
      return Error{
          path, field,
          fmt::format("shape {} x {} is not a whole number of bytes", format_shape(d.shape), d.dtype)};
    }
    const uint64_t size = total_bits / 8;
    if (__builtin_add_overflow(offset, size, &end))
      return Error{path, field, "data section overflows 64 bits"};
    header[d.name] = {{"dtype", d.dtype}, {"shape", d.shape}, {"data_offsets", {offset, end}}};
    w.begins_.push_back(offset);
    w.sizes_.push_back(size);
    offset = end;
  }
  w.data_bytes_ = offset;

  std::string text;
  try {
    text = header.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    return Error{path, "header", "a tensor name or metadata string is not valid UTF-8"};
  }
  // Spaces up to a multiple of 8, so the data section (at 8 + N) is 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > kSafetensorsMaxHeaderBytes) {
    return Error{path, "header",
                 fmt::format("{} bytes is above the {}-byte limit readers enforce", text.size(),
                             kSafetensorsMaxHeaderBytes)};
  }
  w.header_bytes_ = text.size();
  w.decls_ = std::move(tensors);

  auto out = AtomicFile::create(path, overwrite);
  if (!out) return out.error();
  w.out_.emplace(std::move(*out));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(w.header_bytes_ >> (8 * i));
  if (Status s = w.out_->write(len, sizeof len); !s) return s.error();
  if (Status s = w.out_->write(text.data(), text.size()); !s) return s.error();
  return w;
}

Status SafetensorsWriter::fail(Error e) {
  out_.reset();  // removes the temporary now
  return e;
}

Status SafetensorsWriter::write_tensor(std::string_view name, std::span<const std::byte> data) {
  if (!out_) return Error{path_, "", committed_ ? "write after commit" : "write after an earlier error"};
  // Empty tensors carry no bytes; a caller may skip them.
  while (current_ < decls_.size() && sizes_[current_] == 0 && written_ == 0 && decls_[current_].name != name)
    ++current_;
  if (current_ == decls_.size())
    return fail(Error{path_, "tensor " + std::string(name), "all declared tensors are already written"});
  const SafetensorsDecl& d = decls_[current_];
  if (d.name != name) {
    return fail(Error{path_, "tensor " + std::string(name),
                      fmt::format("written out of order: tensor {} is next", d.name)});
  }
  if (written_ != 0) {
    return fail(Error{path_, "tensor " + d.name,
                      fmt::format("{} of its bytes were already written in chunks", written_)});
  }
  if (data.size() != sizes_[current_]) {
    return fail(Error{path_, "tensor " + d.name,
                      fmt::format("got {} bytes, shape {} x {} needs {}", data.size(), format_shape(d.shape),
                                  d.dtype, sizes_[current_])});
  }
  if (Status s = out_->write(data.data(), data.size()); !s) return fail(s.error());
  ++current_;
  written_ = 0;
  return {};
}

Status SafetensorsWriter::write(std::span<const std::byte> chunk) {
  if (!out_) return Error{path_, "", committed_ ? "write after commit" : "write after an earlier error"};
  if (chunk.empty()) return {};
  while (current_ < decls_.size() && sizes_[current_] == 0) ++current_;
  if (current_ == decls_.size()) {
    return fail(
        Error{path_, "", fmt::format("{} bytes written past the last declared tensor", chunk.size())});
  }
  const SafetensorsDecl& d = decls_[current_];
  const uint64_t left = sizes_[current_] - written_;
  if (chunk.size() > left) {
    return fail(Error{path_, "tensor " + d.name,
                      fmt::format("chunk of {} bytes runs past the tensor's end ({} bytes left of {})",
                                  chunk.size(), left, sizes_[current_])});
  }
  if (Status s = out_->write(chunk.data(), chunk.size()); !s) return fail(s.error());
  written_ += chunk.size();
  if (written_ == sizes_[current_]) {
    ++current_;
    written_ = 0;
  }
  return {};
}

Status SafetensorsWriter::commit() {
  if (!out_) return Error{path_, "", committed_ ? "committed twice" : "commit after an earlier error"};
  while (current_ < decls_.size() && sizes_[current_] == 0) ++current_;
  if (current_ < decls_.size()) {
    const SafetensorsDecl& d = decls_[current_];
    return fail(
        Error{path_, "tensor " + d.name,
              fmt::format("only {} of its {} bytes were written before commit", written_, sizes_[current_])});
  }
  QE_CHECK(out_->offset() == 8 + header_bytes_ + data_bytes_);
  Status s = out_->commit();
  out_.reset();
  committed_ = s.ok();
  return s;
}

}  // namespace qe
