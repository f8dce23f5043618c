// Read-only memory map of a whole file, RAII, move-only. Tensor data stays in the map (zero copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "formats/error.h"

namespace qe {

class MappedFile {
 public:
  // Fails with a one-line Error for a missing file, a directory, or anything mmap refuses.
  static Result<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace qe
