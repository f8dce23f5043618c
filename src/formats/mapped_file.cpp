#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace qe {

Result<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{path, "", std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Error{path, "", std::strerror(err)};
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Error{path, "", "is a directory, expected a file"};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{path, "", "is not a regular file"};
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<uint64_t>(st.st_size);
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return Error{path, "", std::string("mmap failed: ") + std::strerror(err)};
    }
    f.data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace qe

namespace qe {

void release_mapped_pages(std::span<const std::byte> range) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto lo = (reinterpret_cast<uintptr_t>(range.data()) + page - 1) & ~(page - 1);
  const auto hi = (reinterpret_cast<uintptr_t>(range.data()) + range.size()) & ~(page - 1);
  // Advice only: a failure leaves the pages resident, which is harmless.
  if (hi > lo) (void)::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

Result<std::shared_ptr<uint8_t[]>> allocate_streamed(size_t bytes, const std::string& file, const std::string& field) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t len = bytes + kHuge;  // room to align the start to a huge page
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return Error{file, field, "cannot allocate " + std::to_string(bytes) + " bytes: " + std::strerror(errno)};
  auto* start = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~uintptr_t{kHuge - 1});
#ifdef MADV_HUGEPAGE
  (void)::madvise(start, bytes, MADV_HUGEPAGE);  // advice only: without it the buffer is still correct
#endif
  return std::shared_ptr<uint8_t[]>(start, [p, len](uint8_t*) { ::munmap(p, len); });
}

}  // namespace qe
