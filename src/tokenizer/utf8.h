// UTF-8 helpers the tokenizers share: sequence lengths, code point encoding, GPT-2's byte <-> unicode
// mapping, and Utf8Stream, which turns token pieces (arbitrary byte strings: a byte-fallback token is
// one byte of a multi-byte character) into text that is always valid UTF-8.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qe::tokenizer {

// Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for stray continuation or
// invalid bytes, so that a scan always advances), as llama.cpp's unicode_len_utf8.
int utf8_seq_len(uint8_t lead);

// Appends the UTF-8 encoding of code point `cp` (U+FFFD for surrogates and values past U+10FFFF).
void utf8_append(std::string& out, uint32_t cp);

// Length of the valid UTF-8 sequence starting at s[0], or 0 when it is not one (bad lead, a bad or
// missing continuation byte, an overlong form, a surrogate, past U+10FFFF).
int utf8_valid_len(std::string_view s);

// The length of the longest prefix of `s` that is valid UTF-8: s.size() when all of it is, else the
// offset of the first bad sequence.
size_t utf8_valid_prefix(std::string_view s);

// GPT-2's byte-level alphabet (openai/gpt-2 encoder.py bytes_to_unicode): printable Latin-1 bytes
// map to themselves, the other 68 bytes to U+0100.., so every byte is one visible character.
uint32_t gpt2_byte_to_cp(uint8_t b);
// The inverse; -1 for a code point that is not in the alphabet.
int gpt2_cp_to_byte(uint32_t cp);
// gpt2_byte_to_cp(b) as UTF-8.
const std::string& gpt2_byte_to_utf8(uint8_t b);

// Streams bytes out as valid UTF-8: an incomplete sequence at the end of a chunk waits for the next
// chunk; bytes that can never form a character are replaced by U+FFFD (as a UTF-8 decoder with
// errors="replace" does), so whatever push() and finish() return is valid UTF-8 on its own.
class Utf8Stream {
 public:
  // The text that is complete after appending `bytes`.
  std::string push(std::string_view bytes);
  // Whatever is still held (an unfinished sequence at the end of the stream) as U+FFFD.
  std::string finish();
  bool pending() const { return !held_.empty(); }

 private:
  std::string held_;  // at most 3 bytes: the start of a sequence that may still complete
};

}  // namespace qe::tokenizer
