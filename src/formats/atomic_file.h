// Output file that appears whole or not at all: bytes go to a temporary file in the target's
// directory; commit() flushes, fsyncs and renames it into place. Destroying an uncommitted AtomicFile
// (an error, a full disk, an exception) removes the temporary, so no partial output is ever left.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/error.h"

namespace qe {

class AtomicFile {
 public:
  // overwrite=false refuses an existing `path` (checked now and again, atomically, at commit).
  static Result<AtomicFile> create(const std::string& path, bool overwrite);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  Status write(const void* data, uint64_t n);
  // Zero bytes up to the next multiple of `alignment` (a power of two).
  Status pad_to(uint64_t alignment);
  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

  // Flush, fsync, rename over `path`, fsync the directory. After an error the temporary is gone.
  Status commit();

 private:
  AtomicFile() = default;
  Status flush();
  Error io_error(const char* what, int err) const;
  void discard();

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool overwrite_ = false;
  uint64_t offset_ = 0;
  std::vector<char> buf_;
};

}  // namespace qe
