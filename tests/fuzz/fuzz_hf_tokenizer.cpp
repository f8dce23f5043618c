// libFuzzer target: the Hugging Face tokenizer importer (hf_tokenizer_to_gguf: tokenizer.json or
// tokenizer.model, tokenizer_config.json, config.json, generation_config.json, added_tokens.json,
// chat_template.jinja/.json) on arbitrary files. The input packs a directory: parts separated by
// fuzz_common.h's kSectionSeparator, each "FILE NAME\nbytes"; absent names are absent files.
//
// Whatever the importer accepts, the rest of the pipeline must accept too, as qconvert then qrun would
// use it: the GGUF keys load as a tokenizer (load_vocab + Tokenizer::create), which tokenizes, and the
// exporter's tokenizer.json / tokenizer_config.json import again to the same tokens. The GGUF goes
// through a file on tmpfs (GgufWriter writes files), and only for accepted inputs.
// Seeds: tests/fuzz/corpus/hf_tokenizer (make_fuzz_corpus.py: trimmed real tokenizer.json files,
// SentencePiece models, chat template variants).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "fuzz_common.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using qe::tokenizer::HfTokenizerSources;

[[noreturn]] void fail(const std::string& what, const qe::Error& e) {
  std::fprintf(stderr, "fuzz_hf_tokenizer: %s: %s\n", what.c_str(), e.message().c_str());
  std::abort();
}

HfTokenizerSources unpack(std::string_view input) {
  HfTokenizerSources src;
  src.dir = "fuzz";
  for (std::string_view part : qe::fuzz::split_sections(input)) {
    const auto [name, body] = qe::fuzz::split_first_line(part);
    if (std::optional<std::string>* file = src.file(name)) *file = std::string(body);
  }
  return src;
}

// A file of this process on tmpfs when there is one (GgufWriter's fsync costs nothing there), removed
// as soon as it is mapped: a crash leaves nothing behind.
const std::string& scratch_gguf() {
  static const std::string path = [] {
    const fs::path dir = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    return (dir / ("qe-fuzz-hf-tokenizer-" + std::to_string(::getpid()) + ".gguf")).string();
  }();
  return path;
}

qe::GgufFile write_gguf(const std::vector<qe::GgufKv>& kvs) {
  qe::GgufWriter w;
  for (const qe::GgufKv& kv : kvs)
    if (qe::Status s = w.set(kv.key, kv.value); !s) fail("GgufWriter::set", s.error());
  if (qe::Status s = w.open(scratch_gguf(), /*overwrite=*/true); !s) fail("GgufWriter::open", s.error());
  if (qe::Status s = w.finish(); !s) fail("GgufWriter::finish", s.error());
  qe::Result<qe::GgufFile> f = qe::GgufFile::open(scratch_gguf());
  fs::remove(scratch_gguf());  // the mapping stays valid
  if (!f) fail("reading the imported GGUF", f.error());
  return std::move(*f);
}

}  // namespace

constexpr size_t kMaxRoundTripTokens = 8192;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> warnings;
  qe::Result<std::vector<qe::GgufKv>> kvs =
      qe::tokenizer::hf_tokenizer_to_gguf(unpack(qe::fuzz::as_text(data, size)), warnings);
  if (!kvs) {
    qe::fuzz::sink(kvs.error().message().size());
    return 0;
  }
  // Past this many tokens (an id or config.json's vocab_size far beyond the listed tokens: [PAD] fill,
  // capped by the importer) one round trip would take seconds under the sanitizers; large vocabularies
  // are the unit tests' (hf_tokenizer_test: PaddedVocabExportsInIdOrder, 65,000 tokens).
  for (const qe::GgufKv& kv : *kvs) {
    const qe::GgufArray* a = kv.key == "tokenizer.ggml.tokens" ? kv.value.get<qe::GgufArray>() : nullptr;
    if (a && a->size() > kMaxRoundTripTokens) return 0;
  }
  const qe::GgufFile gguf = write_gguf(*kvs);
  qe::Result<qe::tokenizer::Tokenizer> tok = qe::tokenizer::Tokenizer::from_gguf(gguf, &warnings);
  if (!tok) fail("the imported tokenizer does not load", tok.error());
  uint64_t sum = warnings.size();
  sum += tok->tokenize("Hello <|im_start|>world 123\n", true, true).size();

  qe::Result<qe::tokenizer::HfTokenizerFiles> hf = qe::tokenizer::gguf_tokenizer_to_hf(gguf);
  if (!hf) fail("the imported tokenizer does not export", hf.error());
  HfTokenizerSources again;
  again.dir = "exported";
  // As qconvert writes them (run.cpp, write_json_file): a chat template that is not UTF-8 gets U+FFFD.
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  again.tokenizer_json = hf->tokenizer_json.dump(-1, ' ', false, kReplace);
  again.tokenizer_config_json = hf->tokenizer_config_json.dump(-1, ' ', false, kReplace);
  std::vector<std::string> warnings_again;
  qe::Result<std::vector<qe::GgufKv>> kvs_again = qe::tokenizer::hf_tokenizer_to_gguf(again, warnings_again);
  if (!kvs_again) fail("the exported tokenizer does not import", kvs_again.error());
  const qe::GgufFile gguf_again = write_gguf(*kvs_again);
  qe::Result<qe::tokenizer::Tokenizer> tok_again = qe::tokenizer::Tokenizer::from_gguf(gguf_again);
  if (!tok_again) fail("the re-imported tokenizer does not load", tok_again.error());
  QE_CHECK(tok_again->vocab().tokens == tok->vocab().tokens);
  qe::fuzz::sink(sum);
  return 0;
}
