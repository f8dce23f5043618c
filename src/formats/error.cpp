#include "formats/error.h"

#include <cstdio>
#include <cstdlib>

namespace qe {

void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "internal error: %s:%d: check failed: %s\n", file, line, expr);
  std::abort();
}

std::string Error::message() const {
  std::string out;
  for (const std::string* part : {&file, &field, &reason}) {
    if (part->empty()) continue;
    if (!out.empty()) out += ": ";
    out += *part;
  }
  // One line, whatever a hostile file put in a name.
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

}  // namespace qe
