#include "model/model.h"

#include <fmt/core.h>

#include "formats/mapped_file.h"
#include "kernels/threads.h"
#include "model/forward.h"

namespace qe::model {

Result<std::unique_ptr<Model>> open_model(const std::string& path, const ModelOptions& options) {
  if (options.cache_type != GgmlType::F16 && options.cache_type != GgmlType::F32)
    return Error{path, "cache_type",
                 fmt::format("{} is not supported (f16, f32)", ggml_type_name(options.cache_type)),
                 "cache_type"};
  if (options.n_threads < 0)
    return Error{path, "n_threads", fmt::format("{} must be >= 0", options.n_threads), "n_threads"};
  Result<GgufFile> file = GgufFile::open(path);
  if (!file) return file.error();
  Result<Config> config = load_config(*file);
  if (!config) return config.error();
  const bool interleave = options.repack && options.numerics == Numerics::fast;
  Result<Weights> weights = load_weights(*file, *config, interleave, 0, options.f16_as_bf16);
  if (!weights) return weights.error();
  if (Status st = check_numerics(*weights, options.numerics, options.cache_type); !st) {
    Error e = st.error();
    e.file = path;
    return e;
  }
  std::vector<std::string> warnings;
  Result<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_gguf(*file, &warnings);
  if (!tok) return tok.error();
  if (tok->n_vocab() != config->n_vocab)
    return Error{
        path, "tokenizer.ggml.tokens",
        fmt::format("{} tokens, but token_embd.weight has {} rows", tok->n_vocab(), config->n_vocab)};
  // The tokenizer holds the vocabulary now (2-3 MB of strings for a 49k-token one); the other metadata
  // stays for whoever reads it (the chat template).
  for (std::string_view key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.scores",
                               "tokenizer.ggml.token_type"})
    file->erase(key);
  // Everything before the data section has been parsed into the GgufFile: its pages in the map (the
  // vocabulary's 1-2 MB) are not read again. A later read would fault them back in, so this is advice.
  release_mapped_pages(file->bytes().first(static_cast<size_t>(file->data_offset())));
  // Moving the GgufFile keeps its mapping (and so the weight views) where it is.
  auto m = std::unique_ptr<Model>(new Model{path, std::move(*file), std::move(*config), std::move(*weights),
                                            std::move(*tok), options, std::move(warnings)});
  if (m->options.n_threads == 0) m->options.n_threads = kernels::default_thread_count();
  return m;
}

}  // namespace qe::model
