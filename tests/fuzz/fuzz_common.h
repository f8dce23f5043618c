// What the libFuzzer targets share: splitting one input into several files or fields, a sink the
// optimiser cannot drop, and the paths of the committed data (QE_FUZZ_DIR, set by tests/fuzz/CMakeLists.txt).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace qe::fuzz {

// Separates the parts of a multi-part input. Three record-separator bytes: a mutation rarely makes
// them by accident, and none of the seeds' text or protobuf bytes holds them (make_fuzz_corpus.py checks).
inline constexpr std::string_view kSectionSeparator = "\x1e\x1e\x1e";

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline std::vector<std::string_view> split_sections(std::string_view input) {
  std::vector<std::string_view> out;
  for (size_t at; (at = input.find(kSectionSeparator)) != std::string_view::npos;) {
    out.push_back(input.substr(0, at));
    input.remove_prefix(at + kSectionSeparator.size());
  }
  out.push_back(input);
  return out;
}

// "name\nbody" -> {name, body}; a part without a newline is all name.
inline std::pair<std::string_view, std::string_view> split_first_line(std::string_view part) {
  const size_t nl = part.find('\n');
  if (nl == std::string_view::npos) return {part, {}};
  return {part.substr(0, nl), part.substr(nl + 1)};
}

// Keeps a computed value alive so the work that made it is not optimised away.
inline void sink(uint64_t v) {
  volatile uint64_t s = v;
  (void)s;
}

// A committed file under tests/fuzz/ (data the targets start from). A missing file is a broken
// checkout, not an input to survive: stop at once, before any fuzzing.
inline std::string read_fuzz_file(std::string_view relative) {
  const std::string path = std::string(QE_FUZZ_DIR) + "/" + std::string(relative);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fuzz: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qe::fuzz
