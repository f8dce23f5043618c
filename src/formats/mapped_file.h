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

// Hands the pages wholly inside `range` (part of a read-only file map) back to the kernel: the process's
// RSS drops, and a later read simply faults them in again from the file. Used after a tensor has been
// copied into another layout. A no-op where the OS has no madvise.
void release_mapped_pages(std::span<const std::byte> range);

}  // namespace qe
