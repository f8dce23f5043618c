#include "cli/qconvert/info.h"

#include <fmt/core.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "cli/qconvert/info_print.h"
#include "formats/gguf_json.h"
#include "formats/gguf_reader.h"
#include "formats/hf_model_dir.h"
#include "formats/safetensors.h"
#include "formats/safetensors_json.h"

namespace qe::cli {
namespace {

// The first bytes decide, not the extension: a renamed file is still read for what it is.
bool starts_with_gguf_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[4] = {};
  size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  // Big-endian GGUF files carry the same magic; the reader refuses them with its own message.
  return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

void emit(const InfoOptions& opt, const std::string& title, const nlohmann::json& j) {
  if (opt.json) {
    // Strings in files are bytes: invalid UTF-8 is replaced rather than aborting the dump.
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    print_info_table(stdout, title, j);
  }
}

}  // namespace

Status print_info(const InfoOptions& opt) {
  struct stat st {};
  if (::stat(opt.path.c_str(), &st) != 0) return Error{opt.path, "", std::strerror(errno)};

  if (S_ISDIR(st.st_mode)) {
    auto dir = HfModelDir::open(opt.path);
    if (!dir) return dir.error();
    std::string title = fmt::format("{}: Hugging Face model directory, {} safetensors file{}", opt.path,
                                    dir->shards().size(), dir->shards().size() == 1 ? "" : "s");
    emit(opt, title, safetensors_to_json(*dir, opt.hash));
    return {};
  }
  if (starts_with_gguf_magic(opt.path)) {
    auto gguf = GgufFile::open(opt.path);
    if (!gguf) return gguf.error();
    emit(opt, fmt::format("{}: GGUF v{}, alignment {}", opt.path, gguf->version(), gguf->alignment()),
         gguf_to_json(*gguf, opt.hash));
    return {};
  }
  auto st_file = SafetensorsFile::open(opt.path);
  if (!st_file) {
    Error e = st_file.error();
    e.reason += " (not GGUF either: no GGUF magic)";
    return e;
  }
  emit(opt, fmt::format("{}: safetensors", opt.path), safetensors_to_json(*st_file, opt.hash));
  return {};
}

}  // namespace qe::cli
