// Streaming safetensors writer. All tensors are declared up front (name, dtype, shape) so the header can
// be written first; the header is padded with spaces so the data starts 8-byte aligned, as the reference
// writer does. Tensor bytes then follow in declaration order, whole (write_tensor) or in chunks (write),
// each checked against its declared size. The output goes through AtomicFile: it appears whole at
// commit() or not at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/safetensors.h"

namespace qe {

struct SafetensorsDecl {
  std::string name;
  std::string dtype;            // a safetensors dtype name: "F32", "F16", "BF16", "I64", ...
  std::vector<uint64_t> shape;  // outermost first; {} for a scalar
};

class SafetensorsWriter {
 public:
  // Checks the declarations (unique, non-reserved names; known dtypes; whole-byte sizes without
  // overflow; valid UTF-8), creates the temporary output and writes the header.
  // overwrite=false refuses an existing `path`.
  static Result<SafetensorsWriter> create(const std::string& path, std::vector<SafetensorsDecl> tensors,
                                          const SafetensorsMetadata& metadata = {}, bool overwrite = false);

  SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = delete;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The whole of the next declared tensor; `name` must be that tensor's and data its exact size.
  Status write_tensor(std::string_view name, std::span<const std::byte> data);
  // The next bytes of the data section; a chunk may not run past the end of the current tensor.
  Status write(std::span<const std::byte> chunk);
  // Checks every tensor was written in full, then flushes, fsyncs and renames into place.
  Status commit();

  const std::string& path() const { return path_; }
  uint64_t header_bytes() const { return header_bytes_; }  // N, including the padding
  uint64_t data_bytes() const { return data_bytes_; }
  // Byte offset of each declared tensor in the finished file.
  uint64_t tensor_offset(size_t i) const { return 8 + header_bytes_ + begins_[i]; }

 private:
  SafetensorsWriter() = default;
  Status fail(Error e);  // drops the temporary output; later calls fail too

  std::string path_;
  std::optional<AtomicFile> out_;  // empty after commit or after an error
  std::vector<SafetensorsDecl> decls_;
  std::vector<uint64_t> begins_, sizes_;  // relative to the data section
  uint64_t header_bytes_ = 0;
  uint64_t data_bytes_ = 0;
  size_t current_ = 0;    // next tensor to fill
  uint64_t written_ = 0;  // bytes of tensor `current_` written so far
  bool committed_ = false;
};

}  // namespace qe
