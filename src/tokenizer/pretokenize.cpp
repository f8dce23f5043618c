#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include <array>
#include <utility>

namespace qe::tokenizer {

namespace {

// GPT-2 (openai/gpt-2 encoder.py). llama.cpp leaves out the final `|\s+` alternative; it only ever
// matches what would otherwise be a one-character gap between matches, which is a piece either way.
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama 3 (tokenizer.json's `(?i:'s|...)` spelled out in case pairs, as llama.cpp does).
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2 / StableLM2: Llama 3 with single digits.
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct NamedTraits {
  std::vector<std::string_view> names;
  PreTokenizerTraits traits;
};

const std::vector<NamedTraits>& pre_tokenizer_table() {
  static const std::vector<NamedTraits> table = {
      // llama.cpp's fallback for a missing or "default" pre-tokenizer.
      {{"", "default"},
       {{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false, true, false}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {{kLlama3}, true, true, true}},
      {{"dbrx", "smaug-bpe"}, {{kLlama3}, false, true, false}},
      {{"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mellum",
        "mpt", "olmo", "jais", "exaone4"},
       {{kGpt2}, false, true, false}},
      {{"trillion"}, {{kGpt2}, false, false, false}},
      // SmolLM / StarCoder: every digit on its own, then GPT-2.
      {{"starcoder", "refact", "codeshell", "exaone", "minerva-7b"}, {{R"(\p{N})", kGpt2}, false, true, false}},
      {{"smollm", "command-r"}, {{R"(\p{N})", kGpt2}, false, false, false}},
      {{"qwen2", "deepseek-r1-qwen", "megrez"}, {{kQwen2}, false, false, false}},
      {{"stablelm2"}, {{kQwen2}, false, true, false}},
      {{"falcon"},
       {{R"([\p{P}\$\+<=>\^~\|`]+)", R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))",
         "[0-9][0-9][0-9]"},
        false, true, false}},
  };
  return table;
}

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

const PreTokenizerTraits* find_pre_tokenizer(std::string_view name) {
  for (const NamedTraits& e : pre_tokenizer_table()) {
    for (std::string_view n : e.names) {
      if (n == name) return &e.traits;
    }
  }
  return nullptr;
}

struct PreTokenizer::Impl {
  std::vector<CodePtr> codes;
};

PreTokenizer::PreTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

Result<PreTokenizer> PreTokenizer::create(const std::vector<std::string>& patterns) {
  auto impl = std::make_unique<Impl>();
  for (size_t i = 0; i < patterns.size(); ++i) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    CodePtr code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(patterns[i].data()), patterns[i].size(),
                               PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr));
    if (!code) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(err, msg.data(), msg.size());
      return Error{"<pre-tokenizer>", fmt::format("pattern {}", i),
                   fmt::format("{} at offset {}", reinterpret_cast<const char*>(msg.data()), err_off)};
    }
    // JIT is an optimisation: where it is unavailable pcre2_match interprets the same pattern.
    (void)pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
    impl->codes.push_back(std::move(code));
  }
  return PreTokenizer(std::move(impl));
}

namespace {

// Splits one piece by one pattern, appending matches and the gaps between them.
void split_one(const pcre2_code* code, pcre2_match_data* md, std::string_view s,
               std::vector<std::string_view>& out) {
  const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;   // where the next search starts
  size_t last = 0;  // end of what has been emitted
  while (pos < s.size()) {
    int rc = pcre2_match(code, subject, s.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_JIT, md, nullptr);
    }
    if (rc < 0) break;  // no further match (or a resource limit): the rest is one piece
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // an empty match cuts nothing; step over one character
      pos = b + 1;
      while (pos < s.size() && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (b > last) out.push_back(s.substr(last, b - last));
    out.push_back(s.substr(b, e - b));
    last = pos = e;
  }
  if (last < s.size()) out.push_back(s.substr(last));
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  if (text.empty()) return;
  std::vector<std::string_view> cur{text}, next;
  for (const CodePtr& code : impl_->codes) {
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(code.get(), nullptr));
    QE_CHECK(md != nullptr);
    next.clear();
    for (std::string_view piece : cur) split_one(code.get(), md.get(), piece, next);
    std::swap(cur, next);
  }
  out.insert(out.end(), cur.begin(), cur.end());
}

}  // namespace qe::tokenizer
