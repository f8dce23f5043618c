// Read-only memory map of a whole file, RAII, move-only. Tensor data stays in the map (zero copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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

// `bytes` of zero-filled anonymous memory, 2 MiB aligned and advised to the kernel for transparent huge
// pages (MADV_HUGEPAGE, where the OS has it; advice only). For the large read-mostly buffers that
// one-token matmuls stream once per token: with 4 KiB pages every 4 KiB of the stream is a TLB miss
// and a fresh page for the hardware prefetcher. When mmap fails, the error names `file` and `field`.
Result<std::shared_ptr<uint8_t[]>> allocate_streamed(size_t bytes, const std::string& file, const std::string& field);

}  // namespace qe
