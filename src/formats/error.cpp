#include "formats/error.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace qe {

void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "internal error: %s:%d: check failed: %s\n", file, line, expr);
  std::abort();
}

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (Unicode's table 3-7: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0.
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return b(k) >= lo && b(k) <= hi;
  };
  const unsigned c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const bool second = c == 0xE0 ? cont(1, 0xA0) : c == 0xED ? cont(1, 0x80, 0x9F) : cont(1);
    return second && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const bool second = c == 0xF0 ? cont(1, 0x90) : c == 0xF4 ? cont(1, 0x80, 0x8F) : cont(1);
    return second && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t len = c < 0x80 ? 1 : utf8_length(text, i);
    const size_t n = std::max<size_t>(len, 1);
    const bool control = (c < 0x20 && c != '\t') || c == 0x7F ||
                         (c == 0xC2 && len == 2 && static_cast<unsigned char>(text[i + 1]) < 0xA0);
    if (c == '\n' || c == '\r') {
      out += ' ';
    } else if (len == 0 || control) {
      for (size_t k = 0; k < n; ++k) {
        char hex[5];
        std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(text[i + k]));
        out += hex;
      }
    } else {
      out.append(text, i, n);
    }
    i += n;
  }
  return out;
}

std::string Error::message() const {
  std::string text;
  for (const std::string* part : {&file, &field, &reason}) {
    if (part->empty()) continue;
    if (!text.empty()) text += ": ";
    text += *part;
  }
  return printable(text);  // one line, whatever a hostile file put in a name
}

}  // namespace qe
