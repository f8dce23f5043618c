// libFuzzer target: the model loader, open_model (GGUF metadata -> Config, Weights, vocabulary,
// tokenizer), on arbitrary bytes; a model it accepts then generates a few tokens from a short prompt,
// so weights and hyperparameters that passed the checks are also ones the forward pass and sampler
// survive. Either an Error comes back or the model runs: never a crash, leak or sanitizer report.
//
// The input is the whole GGUF file. open_model takes a path (it maps the file), so each input goes to
// one memfd made at start-up, opened as /proc/self/fd/N: the real entry point, without a disk write per
// run. The last byte (inside the tensor data of a well-formed file) picks the ModelOptions.
// Seeds: tests/fuzz/corpus/model_load (make_fuzz_corpus.py: tiny llama models, several weight types).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"

namespace {

int memfd() {
  static const int fd = [] {
    const int f = ::memfd_create("fuzz_model.gguf", MFD_CLOEXEC);
    if (f < 0) {
      std::perror("fuzz_model_load: memfd_create");
      std::abort();
    }
    return f;
  }();
  return fd;
}

bool write_all(int fd, const uint8_t* data, size_t size) {
  if (::ftruncate(fd, 0) != 0) return false;
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (!write_all(fd, data, size)) {
    std::perror("fuzz_model_load: write to memfd");
    std::abort();
  }
  const uint8_t pick = size > 0 ? data[size - 1] : 0;
  qe::model::ModelOptions o;
  o.numerics = pick & 1 ? qe::kernels::Numerics::llamacpp : qe::kernels::Numerics::fast;
  o.cache_type = pick & 2 ? qe::GgmlType::F32 : qe::GgmlType::F16;
  o.repack = (pick & 4) == 0;
  o.f16_as_bf16 = (pick & 8) != 0;
  o.n_threads = 1;
  qe::Result<std::unique_ptr<qe::model::Model>> m =
      qe::model::open_model("/proc/self/fd/" + std::to_string(fd), o);
  if (!m) {
    qe::fuzz::sink(m.error().message().size());
    return 0;
  }
  const qe::model::Model& model = **m;
  uint64_t sum = model.warnings.size();
  std::vector<int32_t> prompt = qe::model::tokenize_prompt(model, "<|im_start|>Hi, 12");
  if (prompt.empty()) prompt.push_back(0);
  if (!qe::model::check_prompt(model, prompt, 16)) return 0;
  qe::Result<qe::model::Context> ctx = qe::model::Context::create(model, {.n_ctx = 16, .n_batch = 4});
  if (!ctx) {
    sum += ctx.error().message().size();
  } else {
    qe::model::Sampler sampler(qe::model::SamplerParams{.seed = pick});
    auto on_chunk = [&](const qe::model::StreamChunk& c) {
      sum += c.text.size() + c.piece.size();
      return true;
    };
    qe::Result<qe::model::GenerateStats> r =
        qe::model::generate(*ctx, sampler, prompt, {.n_predict = 3}, on_chunk);
    sum += r ? static_cast<uint64_t>(r->n_gen) : r.error().message().size();
  }
  qe::fuzz::sink(sum);
  return 0;
}
