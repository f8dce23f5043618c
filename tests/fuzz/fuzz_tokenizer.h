// The encode/decode checks fuzz_tokenizer_bpe and fuzz_tokenizer_spm share. An input is one flag byte
// then the text: bit 0 add_special, bit 1 parse_special, bit 2 remove_special, bit 3 unparse_special,
// bit 4 token_to_piece's `special`. Besides not crashing, every id must be in the vocabulary, a stream
// of pieces must come out as valid UTF-8, and text the vocabulary can spell must come back unchanged.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace qe::fuzz {

inline bool valid_utf8(std::string_view s) {
  return tokenizer::utf8_valid_prefix(s) == s.size();
}

// Which round trips a target can promise for a text: detokenize(tokenize(text)) == text with the
// special tokens left as text (plain) or parsed and rendered back (specials).
struct RoundTrip {
  bool plain = false;
  bool specials = false;
};

// The text, the ids and what came back, on stderr: a finding shows where the two part.
inline void print_mismatch(std::string_view text, const std::vector<int32_t>& ids, std::string_view back) {
  auto hex = [](std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
      if (c >= 0x20 && c < 0x7F)
        out += static_cast<char>(c);
      else
        out += fmt::format("\\x{:02X}", c);
    }
    return out;
  };
  fmt::print(stderr, "round trip differs:\n  text {}\n  back {}\n  ids  {}\n", hex(text), hex(back),
             fmt::join(ids, " "));
}

inline void check_round_trip(const tokenizer::Tokenizer& tok, std::string_view text, bool specials) {
  const std::vector<int32_t> ids = tok.tokenize(text, /*add_special=*/false, /*parse_special=*/specials);
  const std::string back = tok.detokenize(ids, /*remove_special=*/false, /*unparse_special=*/specials);
  if (back != text) print_mismatch(text, ids, back);
  QE_CHECK(back == text);
}

inline void exercise_tokenizer(const tokenizer::Tokenizer& tok, std::string_view input,
                               RoundTrip round_trip) {
  const uint8_t flags = input.empty() ? 0 : static_cast<uint8_t>(input[0]);
  const std::string_view text = input.empty() ? input : input.substr(1);
  const bool add_special = flags & 1, parse_special = flags & 2, remove_special = flags & 4;
  const bool unparse_special = flags & 8, piece_special = flags & 16;

  const std::vector<int32_t> ids = tok.tokenize(text, add_special, parse_special);
  tokenizer::Utf8Stream stream;
  std::string streamed, pieces;
  for (int32_t id : ids) {
    QE_CHECK(tok.vocab().valid_id(id));
    const std::string_view piece = tok.token_to_piece(id, piece_special);
    pieces += piece;
    streamed += stream.push(piece);
  }
  streamed += stream.finish();
  QE_CHECK(valid_utf8(streamed));
  if (valid_utf8(pieces)) QE_CHECK(streamed == pieces);
  uint64_t sum = tok.detokenize(ids, remove_special, unparse_special).size();

  if (round_trip.plain) check_round_trip(tok, text, false);
  if (round_trip.specials) check_round_trip(tok, text, true);

  // The same bytes read as token ids, most of them outside the vocabulary: decoding must skip them.
  std::vector<int32_t> hostile(text.size() / 4);
  if (!hostile.empty()) std::memcpy(hostile.data(), text.data(), hostile.size() * 4);
  for (int32_t id : hostile)
    sum += tok.token_to_piece(id, piece_special).size() + tok.is_eog(id) + tok.is_control(id);
  sum += tok.detokenize(hostile, remove_special, unparse_special).size();
  sink(sum);
}

}  // namespace qe::fuzz
