// GGUF writer (always version 3, little-endian). Metadata and the tensor list are declared first;
// open() writes the header, metadata and tensor infos; then each tensor's bytes are streamed in
// declaration order, so a model never has to be in memory at once. Output goes through AtomicFile:
// the .gguf appears, complete, at finish() or not at all (an error, a full disk, or a writer
// destroyed before finish() leaves nothing behind).
//
//   GgufWriter w;
//   w.set("general.architecture", GgufValue::str("llama"));
//   w.add_tensor("token_embd.weight", GgmlType::Q4_0, {576, 49152});
//   w.open("out.gguf", /*overwrite=*/false);
//   w.write_tensor("token_embd.weight", bytes);
//   w.finish();
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "formats/ggml_type.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_value.h"

namespace qe {

class GgufWriter {
 public:
  GgufWriter() = default;
  GgufWriter(GgufWriter&&) noexcept = default;
  GgufWriter& operator=(GgufWriter&&) = delete;
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  ~GgufWriter() = default;  // an unfinished output's temporary file is removed

  // ---- Before open().
  // Adds a key in insertion order. Fails for an empty or duplicate key, arrays nested deeper than
  // kGgufMaxArrayDepth, or a general.alignment that is not a uint32 non-zero power of two (it sets
  // the data alignment; default 32).
  Status set(std::string key, GgufValue value);
  // Declares the next tensor: dims innermost first (dims[0] is the row length), 1 to 4 dims, each
  // > 0, the row a multiple of the type's block size, the name unique and shorter than 64 bytes
  // (llama.cpp's GGML_MAX_NAME).
  Status add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims);

  // Creates the temporary output next to `path` and writes everything up to the tensor data.
  // overwrite=false refuses an existing `path`.
  Status open(const std::string& path, bool overwrite);

  // ---- After open(), tensors in declaration order.
  // All of tensor `name`'s bytes in one call (exactly its declared size).
  Status write_tensor(std::string_view name, std::span<const std::byte> data);
  // Part of tensor `name`'s bytes; the tensor is complete when its declared size has arrived.
  Status write_tensor_chunk(std::string_view name, std::span<const std::byte> data);
  // Pads, flushes, fsyncs and renames into place. Fails if a tensor is incomplete.
  Status finish();

  uint64_t alignment() const { return alignment_; }
  // Declared tensors; offsets (relative to the data section) are set by open().
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const std::vector<GgufKv>& metadata() const { return kvs_; }

 private:
  enum class State { kDeclaring, kWriting, kDone, kFailed };

  Error error(std::string field, std::string reason) const;
  Status fail(Error e);  // drops the output (its temporary file goes) and poisons the writer
  Status check_writing(std::string_view name);

  State state_ = State::kDeclaring;
  std::string path_ = "<gguf writer>";
  uint64_t alignment_ = kGgufDefaultAlignment;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensorInfo> tensors_;  // data spans stay empty
  std::set<std::string, std::less<>> kv_names_, tensor_names_;
  std::optional<AtomicFile> out_;
  uint64_t data_offset_ = 0;
  size_t next_ = 0;         // tensor being written
  uint64_t next_done_ = 0;  // bytes of it written so far
};

// The bytes of one metadata value as GGUF stores it (type id not included for the top level).
void gguf_encode_value(const GgufValue& value, std::vector<std::byte>& out);

}  // namespace qe
