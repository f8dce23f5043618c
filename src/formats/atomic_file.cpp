#include "formats/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace qe {
namespace {

constexpr size_t kBufferBytes = 4u << 20;  // few syscalls for many small metadata writes

std::string dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The `overwrite` argument decides this one: the front end says how to set it.
Error exists_error(const std::string& path) { return Error{path, "", "already exists", "overwrite"}; }

}  // namespace

Result<AtomicFile> AtomicFile::create(const std::string& path, bool overwrite) {
  if (path.empty()) return Error{"<output>", "", "empty output path"};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Error{path, "", "is a directory, expected a file path"};
    if (!overwrite) return exists_error(path);
  }
  AtomicFile f;
  f.path_ = path;
  f.overwrite_ = overwrite;
  std::string tmpl = dir_of(path) + "/." + base_of(path) + ".tmp-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  f.fd_ = ::mkostemp(name.data(), O_CLOEXEC);
  if (f.fd_ < 0) return Error{path, "", std::string("cannot create a temporary file: ") + std::strerror(errno)};
  f.tmp_path_ = name.data();
  // mkostemp makes 0600; outputs are ordinary files.
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(f.fd_, 0666 & ~mask);
  f.buf_.reserve(kBufferBytes);
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_path_(std::move(other.tmp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      overwrite_(other.overwrite_),
      offset_(other.offset_),
      buf_(std::move(other.buf_)) {
  other.tmp_path_.clear();
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
  tmp_path_.clear();
}

Error AtomicFile::io_error(const char* what, int err) const {
  return Error{path_, "", std::string(what) + ": " + std::strerror(err)};
}

Status AtomicFile::flush() {
  size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Error e = io_error("write failed", n < 0 ? errno : ENOSPC);
      discard();
      return e;
    }
    done += static_cast<size_t>(n);
  }
  buf_.clear();
  return {};
}

Status AtomicFile::write(const void* data, uint64_t n) {
  if (fd_ < 0) return Error{path_, "", "write after the output was closed"};
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (buf_.size() == kBufferBytes) {
      if (Status s = flush(); !s) return s;
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, kBufferBytes - buf_.size()));
    buf_.insert(buf_.end(), p, p + take);
    p += take;
    n -= take;
    offset_ += take;
  }
  return {};
}

Status AtomicFile::pad_to(uint64_t alignment) {
  QE_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0);
  static const char zeros[256] = {};
  uint64_t pad = (alignment - offset_ % alignment) % alignment;
  while (pad > 0) {
    uint64_t take = std::min<uint64_t>(pad, sizeof zeros);
    if (Status s = write(zeros, take); !s) return s;
    pad -= take;
  }
  return {};
}

Status AtomicFile::commit() {
  if (fd_ < 0) return Error{path_, "", "commit after the output was closed"};
  if (Status s = flush(); !s) return s;
  if (::fsync(fd_) != 0) {
    Error e = io_error("fsync failed", errno);
    discard();
    return e;
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    Error e = io_error("close failed", errno);
    discard();
    return e;
  }
  fd_ = -1;
  int rc = overwrite_ ? ::rename(tmp_path_.c_str(), path_.c_str())
                      : ::renameat2(AT_FDCWD, tmp_path_.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE);
  if (rc != 0) {
    Error e = errno == EEXIST ? exists_error(path_) : io_error("rename failed", errno);
    discard();
    return e;
  }
  tmp_path_.clear();
  int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
  return {};
}

}  // namespace qe
