// Level selection: select_isa() may only pick a level the CPU can run; anything else is an Error. Where the
// choice comes from (a flag, an environment variable) is the front end's business: it passes a note for the log.
#include <atomic>
#include <cctype>
#include <mutex>

#include "kernels/kernel_tables.h"

namespace qe::kernels {
namespace {

struct State {
  std::atomic<const LevelTables*> active{nullptr};
  std::once_flag once;
  std::string how = "best available";
};

State& state() {
  static State s;
  return s;
}

void init_default() {
  State& s = state();
  std::call_once(s.once, [&s] { s.active.store(tables_for(best_isa())); });
}

const LevelTables& active_tables() {
  const LevelTables* t = state().active.load(std::memory_order_acquire);
  if (t) return *t;
  init_default();
  return *state().active.load(std::memory_order_acquire);
}

// llama.cpp takes its GEMV paths for one token (ggml_vec_dot_f16), tinyBLAS for a batch.
const KernelTable& numerics_table(const LevelTables& t, Numerics numerics, int64_t n_tokens) {
  if (numerics == Numerics::fast) return t.fast;
  return n_tokens == 1 ? t.llamacpp_single : t.llamacpp_batch;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect_cpu_features();
  return f;
}

bool isa_supported(Isa isa) { return tables_for(isa) != nullptr && cpu_has_isa(cpu_features(), isa); }

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon})
    if (isa_supported(isa)) return isa;
  return Isa::ref;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref: return "ref";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon})
    if (lower == isa_name(isa)) return isa;
  if (lower == "scalar") return Isa::ref;
  return std::nullopt;
}

const KernelTable* kernel_table(Isa isa) { return kernel_table(isa, Numerics::fast, 1); }

const KernelTable* kernel_table(Isa isa, Numerics numerics, int64_t n_tokens) {
  return isa_supported(isa) ? &numerics_table(*tables_for(isa), numerics, n_tokens) : nullptr;
}

const KernelTable& kernels() { return active_tables().fast; }

const KernelTable& kernels(Numerics numerics, int64_t n_tokens) {
  return numerics_table(active_tables(), numerics, n_tokens);
}

Isa active_isa() { return kernels().isa; }

Status select_isa(Isa isa, std::string_view how) {
  if (!isa_supported(isa)) {
    return Error{"", "isa", std::string(isa_name(isa)) +
                                " is not supported by this CPU/build (best: " + std::string(isa_name(best_isa())) + ")"};
  }
  init_default();
  state().active.store(tables_for(isa), std::memory_order_release);
  state().how = how;
  return {};
}

Status select_isa(std::string_view name, std::string_view how) {
  const auto isa = isa_from_name(name);
  if (!isa) return Error{"", "isa", "unknown ISA '" + std::string(name) + "' (ref, avx2, avx512, neon)"};
  return select_isa(*isa, how);
}

void note_isa_choice(std::string_view how) {
  init_default();
  state().how = how;
}

std::string describe_isa() {
  const KernelTable& k = kernels();
  return "kernels: " + std::string(isa_name(k.isa)) + " (best " + std::string(isa_name(best_isa())) +
         "; cpu: " + cpu_features().brand + "; " + state().how +
         (k.bf16_dot ? "; bf16 by vdpbf16ps, activations rounded to bf16" : "") + ")";
}

}  // namespace qe::kernels
