// A model ready to run: the mapped GGUF, its hyperparameters, the weight views into the mapping and the
// tokenizer, checked against each other once at open (what llama.cpp splits into llama_model and
// llama_vocab). Contexts (model/context.h) hold the per-run state and point back here.
//
//   Result<std::unique_ptr<Model>> m = open_model("SmolLM2.gguf", {});
//   Result<Context> ctx = Context::create(**m, {.n_ctx = 2048});
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "formats/gguf_reader.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace qe::model {

struct ModelOptions {
  Numerics numerics = Numerics::fast;
  // The KV cache of this model's contexts: F16 (llama.cpp's default) or F32. A model option rather than a
  // context one because llama.cpp numerics hold only with F16, and that is checked at open.
  GgmlType cache_type = GgmlType::F16;
  // Copy the x16 types (q4_0/q4_1/q8_0, q4_K..q6_K, f16, bf16) into the x16 interleaved layout at load
  // (faster prompts and decode). Only with fast numerics: llama.cpp's summation order needs the file's
  // layout.
  bool repack = true;
  // With repack: f16 matrices are stored as bf16 x16 instead of f16 x16, for vdpbf16ps (AVX512_BF16),
  // which does twice the multiply-adds of f32 FMAs where it pays (kernels/kernel_tables.h). Lossy: bf16
  // keeps 8 of f16's 11 significant bits (rounded to nearest even), and the vdpbf16ps path also rounds
  // the activations to bf16; so opt-in only.
  bool f16_as_bf16 = false;
  int n_threads = 0;  // matmul and scoring threads; 0 = physical cores

  // The KV cache layout the numerics' attention reads (kv_cache.h).
  KvLayout cache_layout() const { return numerics == Numerics::llamacpp ? KvLayout::rows : KvLayout::tiles; }
};

struct Model {
  std::string path;  // as given to open_model: names the model in errors
  GgufFile file;     // the mapping the weight views point into; its metadata less the vocabulary (see tok)
  Config config;
  Weights weights;
  tokenizer::Tokenizer tok;
  ModelOptions options;  // as resolved: n_threads > 0
  // What open_model tolerated in the file, as llama.cpp does (a special token id outside the
  // vocabulary): one line each, naming the file and key. The library prints nothing; front ends do.
  std::vector<std::string> warnings;

  int n_threads() const { return options.n_threads; }
};

// Maps and checks `path`: config, weights (of a type and layout the numerics cover), tokenizer (its
// vocabulary the size of token_embd). Errors name the file; Error::option says when a ModelOptions field
// decided the outcome ("numerics", "cache_type"). Held by pointer: contexts keep its address.
Result<std::unique_ptr<Model>> open_model(const std::string& path, const ModelOptions& options);

}  // namespace qe::model
