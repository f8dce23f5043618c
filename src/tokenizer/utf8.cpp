#include "tokenizer/utf8.h"

namespace qe::tokenizer {

int utf8_seq_len(uint8_t lead) {
  // Indexed by the high nibble: 0-7 ASCII, 8-B continuation (treated as 1), C-D 2, E 3, F 4.
  static constexpr std::array<int, 16> kLen = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

void utf8_append(std::string& out, uint32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int utf8_valid_len(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c0 = b(0);
  if (c0 < 0x80) return 1;
  int n = 0;
  uint32_t cp = 0;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    n = 2, cp = c0 & 0x1F;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    n = 3, cp = c0 & 0x0F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    n = 4, cp = c0 & 0x07;
  } else {
    return 0;  // continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (s.size() < static_cast<size_t>(n)) return 0;
  for (int i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return n;
}

size_t utf8_valid_prefix(std::string_view s) {
  size_t i = 0;
  for (int n; i < s.size() && (n = utf8_valid_len(s.substr(i))) > 0;) i += static_cast<size_t>(n);
  return i;
}

namespace {

struct Gpt2Tables {
  std::array<uint32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  Gpt2Tables() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      utf8_append(to_utf8[b], to_cp[b]);
    }
  }
};

const Gpt2Tables& gpt2_tables() {
  static const Gpt2Tables t;
  return t;
}

// How many bytes at the start of `s` are a proper prefix of some valid sequence (0 when s[0] cannot
// start one). Unicode's "maximal subpart": a broken sequence is replaced by one U+FFFD, as Python's
// decode(errors="replace") does.
size_t valid_prefix_len(std::string_view s) {
  const uint8_t c0 = static_cast<uint8_t>(s[0]);
  size_t n = 0;
  if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
  else if (c0 >= 0xE0 && c0 <= 0xEF) n = 3;
  else if (c0 >= 0xF0 && c0 <= 0xF4) n = 4;
  else return 0;
  size_t i = 1;
  for (; i < s.size() && i < n; ++i) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if ((c & 0xC0) != 0x80) break;
    // The second byte narrows the range (no overlongs, no surrogates, nothing past U+10FFFF).
    if (i == 1 && ((c0 == 0xE0 && c < 0xA0) || (c0 == 0xED && c > 0x9F) || (c0 == 0xF0 && c < 0x90) ||
                   (c0 == 0xF4 && c > 0x8F))) {
      break;
    }
  }
  return i;
}

}  // namespace

uint32_t gpt2_byte_to_cp(uint8_t b) { return gpt2_tables().to_cp[b]; }

const std::string& gpt2_byte_to_utf8(uint8_t b) { return gpt2_tables().to_utf8[b]; }

int gpt2_cp_to_byte(uint32_t cp) {
  if (cp < 256) {
    const uint8_t b = static_cast<uint8_t>(cp);
    return gpt2_tables().to_cp[b] == cp ? b : -1;
  }
  if (cp >= 256 + 68) return -1;
  const auto& t = gpt2_tables().to_cp;
  for (int b = 0; b < 256; ++b) {
    if (t[b] == cp) return b;
  }
  return -1;
}

std::string Utf8Stream::push(std::string_view bytes) {
  std::string in = std::move(held_);
  held_.clear();
  in.append(bytes);
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const std::string_view rest = std::string_view(in).substr(i);
    const int n = utf8_valid_len(rest);
    if (n > 0) {
      out.append(rest.substr(0, n));
      i += n;
      continue;
    }
    const size_t k = valid_prefix_len(rest);
    if (k > 0 && k == rest.size()) {
      held_.assign(rest);  // the rest of this character comes with a later token
      break;
    }
    out += "\xEF\xBF\xBD";  // U+FFFD for the broken sequence (or the one byte that starts none)
    i += k > 0 ? k : 1;
  }
  return out;
}

std::string Utf8Stream::finish() {
  std::string out;
  if (!held_.empty()) out = "\xEF\xBF\xBD";
  held_.clear();
  return out;
}

}  // namespace qe::tokenizer
