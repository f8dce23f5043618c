#include "model/kl_base_file.h"

#include <fmt/core.h>

#include <cstring>

#include "model/perplexity.h"

namespace qe::model::ppl {
namespace {

constexpr int64_t kHeaderBytes = 20;  // magic + 3 int32

}  // namespace

int64_t kl_base_rows_per_chunk(int64_t n_ctx) {
  return n_ctx - 1 - n_ctx / 2;
}

std::optional<int64_t> kl_base_file_size(const KlBaseHeader& h) {
  if (h.n_ctx < 1 || h.n_vocab < 1 || h.n_chunk < 1) return std::nullopt;
  // n_chunk * rows * row_size * 2 reaches 2^87 for hostile headers: every step is checked.
  int64_t tokens = 0, rows = 0, row_bytes = 0, total = 0;
  if (__builtin_mul_overflow(int64_t{h.n_chunk}, int64_t{h.n_ctx} * 4, &tokens) ||
      __builtin_mul_overflow(int64_t{h.n_chunk}, kl_base_rows_per_chunk(h.n_ctx), &rows) ||
      __builtin_mul_overflow(rows, log_prob_row_size(h.n_vocab) * 2, &row_bytes) ||
      __builtin_add_overflow(kHeaderBytes + tokens, row_bytes, &total))
    return std::nullopt;
  return total;
}

int64_t KlBaseReader::row_size() const {
  return log_prob_row_size(h_.n_vocab);
}

Result<KlBaseReader> KlBaseReader::open(const std::string& path) {
  KlBaseReader b;
  b.path_ = path;
  b.in_.open(path, std::ios::binary);
  if (!b.in_) return Error{path, "", "cannot open for reading", "kl_base"};
  char magic[8];
  if (!b.in_.read(magic, 8) || std::memcmp(magic, kKlBaseMagic, 8) != 0)
    return Error{path, "offset 0", "not a llama-perplexity logits file (no \"_logits_\" magic)"};
  int32_t h[3];
  if (!b.in_.read(reinterpret_cast<char*>(h), sizeof h))
    return Error{path, "header", "file ends in the header"};
  b.h_ = {h[0], h[1], h[2]};
  if (b.h_.n_ctx < 4 || b.h_.n_ctx > kKlBaseMaxCtx)
    return Error{path, "n_ctx", fmt::format("{} is out of range", b.h_.n_ctx)};
  if (b.h_.n_vocab < 1) return Error{path, "n_vocab", fmt::format("{} is out of range", b.h_.n_vocab)};
  if (b.h_.n_chunk < 1) return Error{path, "n_chunk", fmt::format("{} is out of range", b.h_.n_chunk)};
  // The size must match exactly before anything large is allocated: the file is input, not trusted.
  b.in_.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(b.in_.tellg());
  const std::optional<int64_t> expect = kl_base_file_size(b.h_);
  if (!expect)
    return Error{path, "header",
                 fmt::format("n_ctx {}, n_vocab {}, n_chunk {} make a file larger than 2^63 bytes",
                             b.h_.n_ctx, b.h_.n_vocab, b.h_.n_chunk)};
  if (size != *expect)
    return Error{path, "size",
                 fmt::format("{} bytes, but n_ctx {}, n_vocab {}, n_chunk {} make {}", size, b.h_.n_ctx,
                             b.h_.n_vocab, b.h_.n_chunk, *expect)};
  b.in_.seekg(kHeaderBytes);
  b.tokens_.resize(static_cast<size_t>(b.h_.n_chunk) * static_cast<size_t>(b.h_.n_ctx));
  if (!b.in_.read(reinterpret_cast<char*>(b.tokens_.data()),
                  static_cast<std::streamsize>(b.tokens_.size() * 4)))
    return Error{path, "tokens", "read failed"};
  return b;
}

Status KlBaseReader::read_chunk(std::span<uint16_t> rows) {
  QE_CHECK(static_cast<int64_t>(rows.size()) == chunk_size());
  const std::string field = fmt::format("chunk {}", next_chunk_ + 1);
  if (next_chunk_ >= h_.n_chunk)
    return Error{path_, field, fmt::format("the file has {} chunks", h_.n_chunk)};
  ++next_chunk_;
  if (!in_.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(rows.size() * 2)))
    return Error{path_, field, "read failed"};
  return {};
}

Result<KlBaseWriter> KlBaseWriter::create(const std::string& path, const KlBaseHeader& h,
                                          std::span<const int32_t> tokens) {
  QE_CHECK(kl_base_file_size(h).has_value());
  const size_t n_tokens = static_cast<size_t>(h.n_chunk) * static_cast<size_t>(h.n_ctx);
  QE_CHECK(tokens.size() >= n_tokens);
  Result<AtomicFile> f = AtomicFile::create(path, /*overwrite=*/true);
  if (!f) return f.error();
  KlBaseWriter w(std::move(*f), h);
  const int32_t fields[3] = {h.n_ctx, h.n_vocab, h.n_chunk};
  if (Status st = w.file_.write(kKlBaseMagic, 8); !st) return st.error();
  if (Status st = w.file_.write(fields, sizeof fields); !st) return st.error();
  if (Status st = w.file_.write(tokens.data(), n_tokens * 4); !st) return st.error();
  return w;
}

Status KlBaseWriter::write_chunk(std::span<const uint16_t> rows) {
  QE_CHECK(static_cast<int64_t>(rows.size()) ==
           kl_base_rows_per_chunk(h_.n_ctx) * log_prob_row_size(h_.n_vocab));
  QE_CHECK(chunks_written_ < h_.n_chunk);
  ++chunks_written_;
  return file_.write(rows.data(), rows.size() * 2);
}

Status KlBaseWriter::commit() {
  if (chunks_written_ != h_.n_chunk)
    return Error{path(), "n_chunk", fmt::format("{} of {} chunks written", chunks_written_, h_.n_chunk)};
  return file_.commit();
}

}  // namespace qe::model::ppl
