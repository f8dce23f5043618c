#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <optional>

#include "formats/gguf_reader.h"
#include "tokenizer/tokenizer_bpe.h"
#include "tokenizer/tokenizer_spm.h"

namespace qe::tokenizer {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

bool is_special_type(TokenType t) { return t == TokenType::kControl || t == TokenType::kUnknown; }

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(s.substr(pos));
  return out;
}

// A piece of the prompt: either a special token found in the text or a run of plain text.
struct Fragment {
  int32_t token;  // kNoToken for text
  size_t off, len;
};

// llama.cpp's token_to_piece with special=true, computed once per token.
std::string render_piece(const Vocab& v, int32_t id) {
  const std::string& text = v.tokens[static_cast<size_t>(id)];
  const TokenType t = v.type(id);
  if (is_special_type(t) || t == TokenType::kUserDefined) return text;
  if (t == TokenType::kByte) {
    // "<0xNN>"; anything else marked as a byte renders as nothing, like an unsupported type.
    auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                             : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    if (text.size() == 6 && text.starts_with("<0x") && text.back() == '>' && hex(text[3]) >= 0 && hex(text[4]) >= 0) {
      return std::string(1, static_cast<char>(hex(text[3]) * 16 + hex(text[4])));
    }
    return {};
  }
  if (t != TokenType::kNormal) return {};  // undefined and unused tokens print nothing
  if (v.model == VocabModel::kSpm) return replace_all(text, kSpace, " ");
  // Byte-level BPE: each character stands for one byte. A character outside the alphabet (a
  // vocabulary that is not byte-level) is kept as it is.
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const int n = utf8_valid_len(std::string_view(text).substr(i));
    if (n == 0) {
      out += text[i++];
      continue;
    }
    uint32_t cp = static_cast<uint8_t>(text[i]) & (n == 1 ? 0x7F : n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
    const int b = gpt2_cp_to_byte(cp);
    if (b >= 0) out += static_cast<char>(b);
    else out.append(text, i, n);
    i += n;
  }
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  Vocab vocab;       // less its BPE merges: the encoder holds them as token id pairs
  TokenIndex index;  // over vocab.tokens
  // token_to_piece(id, special=true) of every id, one after another: id's piece ends at piece_end[id]
  // and begins where id - 1's ends (a std::string per token took 32 bytes of header each).
  std::string piece_bytes;
  std::vector<size_t> piece_end;
  std::vector<int32_t> specials;    // control, user-defined and unknown ids, longest text first
  std::optional<BpeEncoder> bpe;
  std::optional<SpmEncoder> spm;
  bool clean_spaces = false;

  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  std::string_view piece(int32_t id) const {
    const size_t i = static_cast<size_t>(id), begin = i == 0 ? 0 : piece_end[i - 1];
    return std::string_view(piece_bytes).substr(begin, piece_end[i] - begin);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::create(Vocab vocab, std::string_view file) {
  if (Status s = validate_vocab(vocab, file); !s) return s.error();
  auto impl = std::make_unique<Impl>();
  impl->vocab = std::move(vocab);
  const Vocab& v = impl->vocab;
  impl->index = TokenIndex(v.tokens);

  if (v.model == VocabModel::kBpe) {
    Result<BpeEncoder> bpe = BpeEncoder::create(v, impl->index, file);
    if (!bpe) return bpe.error();
    impl->clean_spaces = bpe->clean_spaces();
    impl->bpe.emplace(std::move(*bpe));
    impl->vocab.merges = {};  // now in the encoder; the strings would be a second copy
  } else {
    impl->spm.emplace(impl->index);
  }

  size_t text_bytes = 0;  // a piece is never longer than its token's text
  for (const std::string& t : v.tokens) text_bytes += t.size();
  impl->piece_bytes.reserve(text_bytes);
  impl->piece_end.reserve(v.tokens.size());
  for (int32_t id = 0; id < v.size(); ++id) {
    impl->piece_bytes += render_piece(v, id);
    impl->piece_end.push_back(impl->piece_bytes.size());
    const TokenType t = v.type(id);
    if (is_special_type(t) || t == TokenType::kUserDefined) impl->specials.push_back(id);
  }
  impl->piece_bytes.shrink_to_fit();
  std::stable_sort(impl->specials.begin(), impl->specials.end(), [&](int32_t a, int32_t b) {
    return v.tokens[static_cast<size_t>(a)].size() > v.tokens[static_cast<size_t>(b)].size();
  });
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& file, std::vector<std::string>* warnings) {
  Result<Vocab> v = load_vocab(file, warnings);
  if (!v) return v.error();
  return create(std::move(*v), file.name());
}

// llama.cpp's tokenizer_st_partition: each special token in turn (longest first) cuts every text
// fragment where it occurs, so a longer token is never broken up by a shorter one inside it.
void Tokenizer::Impl::partition(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const {
  frags.clear();
  if (text.empty()) return;
  frags.push_back(Fragment{kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : specials) {
    if (!parse_special && is_special_type(vocab.type(id))) continue;  // user-defined ones still count
    const std::string& tok = vocab.tokens[static_cast<size_t>(id)];
    next.clear();
    bool hit = false;
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.off + f.len;
      size_t start = f.off;
      for (;;) {
        const size_t pos = text.substr(0, end).find(tok, start);
        if (pos == std::string_view::npos) {
          if (start < end) next.push_back(Fragment{kNoToken, start, end - start});
          break;
        }
        hit = true;
        if (pos > start) next.push_back(Fragment{kNoToken, start, pos - start});
        next.push_back(Fragment{id, 0, 0});
        start = pos + tok.size();
      }
    }
    if (hit) std::swap(frags, next);
  }
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (bpe) bpe->encode(text, index, out);
  else spm->encode(text, vocab, index, out);
}

std::vector<int32_t> Tokenizer::tokenize(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  const Vocab& v = m.vocab;
  std::vector<Fragment> frags;
  m.partition(text, parse_special, frags);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && v.add_bos) out.push_back(v.bos);
  // SPM: a space goes before the text and, as in llama.cpp, before text that follows a special token.
  bool prev_special = true;
  std::string escaped;
  for (const Fragment& f : frags) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view piece = text.substr(f.off, f.len);
    if (v.model == VocabModel::kSpm) {
      escaped.clear();
      if (v.add_space_prefix && prev_special) escaped.push_back(' ');
      escaped += piece;
      m.encode_text(replace_all(escaped, " ", kSpace), out);
    } else {
      m.encode_text(piece, out);
    }
    prev_special = false;
  }
  if (add_special && v.add_eos) out.push_back(v.eos);
  return out;
}

std::string_view Tokenizer::token_to_piece(int32_t id, bool special) const {
  const Impl& m = *impl_;
  if (!m.vocab.valid_id(id)) return {};
  if (!special && is_special_type(m.vocab.type(id))) return {};
  return m.piece(id);
}

std::string Tokenizer::detokenize(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const {
  const Vocab& v = impl_->vocab;
  bool remove_space = v.add_space_prefix;
  if (remove_special && v.add_bos && !ids.empty() && ids.front() == v.bos) {
    remove_space = false;  // llama.cpp keeps the space when it drops the BOS
    ids = ids.subspan(1);
  }
  if (remove_special && v.add_eos && !ids.empty() && ids.back() == v.eos) ids = ids.first(ids.size() - 1);

  std::string text;
  for (int32_t id : ids) {
    std::string_view piece = token_to_piece(id, unparse_special);
    if (remove_space && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    remove_space = false;
    text.append(piece);
  }
  if (!impl_->clean_spaces || text.empty()) return text;

  // llama.cpp's clean_up_tokenization_spaces, pass by pass: " ?" " !" " ." " ," lose the space;
  // " ' " becomes "'"; " 's" " 'm" " 're" " 've" lose the space.
  std::string a;
  a += text[0];
  for (size_t i = 1; i < text.size(); ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a += x;
  }
  std::string b;
  b += a[0];
  for (size_t i = 1; i < a.size(); ++i) {
    const char x = a[i];
    if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();
      b += x;
      ++i;  // the space after it goes too
      continue;
    }
    b += x;
  }
  std::string c;
  c += b[0];
  for (size_t i = 1; i < b.size(); ++i) {
    const char x = b[i];
    if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      const char x2 = i + 2 < b.size() ? b[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' || (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) c.pop_back();
    }
    c += x;
  }
  return c;
}

int32_t Tokenizer::n_vocab() const { return impl_->vocab.size(); }
int32_t Tokenizer::bos() const { return impl_->vocab.bos; }
int32_t Tokenizer::eos() const { return impl_->vocab.eos; }
int32_t Tokenizer::eot() const { return impl_->vocab.eot; }
int32_t Tokenizer::eom() const { return impl_->vocab.eom; }
int32_t Tokenizer::unk() const { return impl_->vocab.unk; }
bool Tokenizer::add_bos() const { return impl_->vocab.add_bos; }
bool Tokenizer::add_eos() const { return impl_->vocab.add_eos; }
bool Tokenizer::is_eog(int32_t id) const {
  return id != kNoToken && std::binary_search(impl_->vocab.eog.begin(), impl_->vocab.eog.end(), id);
}
bool Tokenizer::is_control(int32_t id) const {
  return impl_->vocab.valid_id(id) && impl_->vocab.type(id) == TokenType::kControl;
}
int32_t Tokenizer::token_id(std::string_view text) const { return impl_->index.find(text); }
const Vocab& Tokenizer::vocab() const { return impl_->vocab; }

}  // namespace qe::tokenizer
