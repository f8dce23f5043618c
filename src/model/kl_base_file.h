// llama-perplexity's --kl-divergence-base file, read and written byte for byte as llama.cpp does, so
// files move between the two tools in both directions. Little-endian:
//   "_logits_"                         8 bytes magic
//   int32 n_ctx, n_vocab, n_chunk      the run that wrote it
//   int32 tokens[n_chunk * n_ctx]      the text's tokens (not the BOS-replaced inputs)
//   per chunk, per scored position (n_ctx - 1 - n_ctx/2 of them): one log-probability row of
//   log_prob_row_size(n_vocab) uint16 (model/perplexity.h: float scale, float min, quantized log-probs)
// The reader treats the file as hostile: ranges, the exact size the header implies (with overflow
// checks) before anything large is allocated, and a short read anywhere is an Error naming the part.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/atomic_file.h"
#include "formats/error.h"

namespace qe::model::ppl {

inline constexpr char kKlBaseMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
inline constexpr int64_t kKlBaseMaxCtx = int64_t{1} << 24;

struct KlBaseHeader {
  int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
};

// Scored positions per chunk: first = n_ctx/2 .. n_ctx-2 (llama-perplexity's second half).
int64_t kl_base_rows_per_chunk(int64_t n_ctx);
// The file size the header implies; nullopt when it does not fit in 63 bits.
std::optional<int64_t> kl_base_file_size(const KlBaseHeader& h);

class KlBaseReader {
 public:
  // Opens `path` and checks its header and size, then reads the tokens. Errors name the file and the
  // field; failing to open carries option "kl_base".
  static Result<KlBaseReader> open(const std::string& path);

  const std::string& path() const { return path_; }
  const KlBaseHeader& header() const { return h_; }
  std::span<const int32_t> tokens() const { return tokens_; }                           // n_chunk * n_ctx
  int64_t row_size() const;                                                             // uint16 per row
  int64_t chunk_size() const { return kl_base_rows_per_chunk(h_.n_ctx) * row_size(); }  // uint16 per chunk
  // The next chunk's rows (rows.size() == chunk_size()). Error past the last chunk or on a short read.
  Status read_chunk(std::span<uint16_t> rows);

 private:
  std::string path_;
  std::ifstream in_;
  KlBaseHeader h_;
  std::vector<int32_t> tokens_;
  int64_t next_chunk_ = 0;
};

class KlBaseWriter {
 public:
  // Creates `path` (replaced if it exists, whole at commit()) and writes the header and the first
  // n_chunk * n_ctx of `tokens`.
  static Result<KlBaseWriter> create(const std::string& path, const KlBaseHeader& h,
                                     std::span<const int32_t> tokens);

  const std::string& path() const { return file_.path(); }
  // One chunk's rows, in order (rows.size() == rows per chunk * row size).
  Status write_chunk(std::span<const uint16_t> rows);
  // Puts the file in place; Error unless every chunk was written.
  Status commit();

 private:
  KlBaseWriter(AtomicFile f, KlBaseHeader h) : file_(std::move(f)), h_(h) {}

  AtomicFile file_;
  KlBaseHeader h_;
  int64_t chunks_written_ = 0;
};

}  // namespace qe::model::ppl
