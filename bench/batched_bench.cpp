// qbench --batched: llama-batched-bench's measurement (tools/batched-bench of the llama.cpp that
// llama-cpp-python 0.3.16 vendors) through the engine behind qserve (model/batch_engine.h), so the
// scaling of continuous batching is measured without HTTP in the way.
//
// For each B of -npl, B sequences of -npp random prompt tokens (BOS first when the vocabulary adds one)
// are submitted at once to a BatchEngine of B slots; each then generates -ntg tokens greedily (--temp:
// sampled) with its end-of-generation tokens banned (as llama-batched-bench never stops early). T_PP runs
// from the submission to the moment every sequence has sampled its first token (the prompts, in steps of up
// to -b tokens); T_TG from then to the last token: the B * (ntg - 1) tokens that need a decode step each.
// Columns as llama-batched-bench prints them; with -r, the median repetition (by T) after one warm-up.
#include "batched_bench.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cli/isa_choice.h"
#include "kernels/kernel_table.h"
#include "model/batch_engine.h"
#include "model/generate.h"
#include "model/model.h"

namespace qe::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Params {
  std::string model;
  std::vector<int> npl{1, 2, 4, 8};
  int npp = 128, ntg = 128, n_batch = 2048, threads = 0, reps = 1;
  float temp = 0;  // --temp: 0 greedy (llama-batched-bench's); above, sampled with the other defaults
  std::string isa;
};

void usage() {
  std::printf(
      "usage: qbench --batched -m FILE [-npp N] [-ntg N] [-npl B,B,...] [-t N] [-b N] [-r N] [--temp T]\n"
      "                [--isa LEVEL]\n"
      "  llama-batched-bench's table through the engine behind qserve: B sequences of -npp prompt tokens\n"
      "  (default 128), -ntg generated tokens each (default 128), for each B of -npl (default 1,2,4,8);\n"
      "  greedy, or with --temp T > 0 sampled (top-k 40, top-p 0.95, min-p 0.05: llama-server's defaults)\n");
}

std::optional<std::vector<int>> int_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p || v <= 0 || v > 1 << 20) return std::nullopt;
    out.push_back(static_cast<int>(v));
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return std::nullopt;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<int> parse(int argc, char** argv, Params& p) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--batched") continue;
    if (a == "-h" || a == "--help") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "qbench: %s needs a value\n", a.c_str());
      return 2;
    }
    const char* v = argv[++i];
    std::optional<std::vector<int>> list = int_list(v);
    auto one = [&](int& dst) {
      if (!list || list->size() != 1) return false;
      dst = list->front();
      return true;
    };
    bool ok = true;
    if (a == "-m" || a == "--model") p.model = v;
    else if (a == "--isa") p.isa = v;
    else if (a == "--temp") {
      char* end = nullptr;
      p.temp = std::strtof(v, &end);
      if (end == v || *end || !(p.temp >= 0 && p.temp <= 10)) {
        std::fprintf(stderr, "qbench: --temp: \"%s\" is not a temperature from 0 to 10\n", v);
        return 2;
      }
    } else if (a == "-npl")
      ok = list.has_value(), p.npl = list.value_or(p.npl);
    else if (a == "-npp") ok = one(p.npp);
    else if (a == "-ntg") ok = one(p.ntg);
    else if (a == "-t" || a == "--threads") ok = one(p.threads);
    else if (a == "-b" || a == "--batch-size") ok = one(p.n_batch);
    else if (a == "-r" || a == "--repetitions") ok = one(p.reps);
    else {
      std::fprintf(stderr, "qbench: --batched: unknown option %s\n", a.c_str());
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "qbench: %s: \"%s\" is not a positive integer%s\n", a.c_str(), v,
                   a == "-npl" ? " list" : "");
      return 2;
    }
  }
  if (p.model.empty()) {
    std::fprintf(stderr, "qbench: --batched needs -m FILE\n");
    return 2;
  }
  return std::nullopt;
}

struct Timing {
  double t_pp = 0, t_tg = 0;  // seconds
};

// One round: B sequences through a fresh engine. Error text on failure.
std::optional<Timing> run_round(const model::Model& m, const Params& p, int b, std::mt19937& rng, std::string& err) {
  model::BatchEngineParams ep;
  ep.n_slots = b;
  ep.n_ctx = p.npp + p.ntg + 1;
  ep.n_batch = std::max(p.n_batch, b);
  auto engine = model::BatchEngine::create(m, ep);
  if (!engine) {
    err = engine.error().message();
    return std::nullopt;
  }
  std::mutex mu;
  std::condition_variable cv;
  int firsts = 0, dones = 0;
  Clock::time_point t_first, t_last;
  std::string failure;
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(m.config.n_vocab - 1));
  const bool bos = m.tok.add_bos() && m.tok.bos() >= 0;
  const std::vector<int32_t> banned = model::eog_ids(m);
  const Clock::time_point t0 = Clock::now();
  for (int s = 0; s < b; ++s) {
    model::BatchRequest req;
    req.prompt.resize(static_cast<size_t>(p.npp));
    for (int32_t& id : req.prompt) id = any(rng);
    if (bos) req.prompt[0] = m.tok.bos();
    req.max_tokens = p.ntg;
    req.sampling.temp = p.temp;
    req.sampling.seed = static_cast<uint32_t>(s + 1);
    req.sampling.ban(banned);
    auto id = (*engine)->submit(std::move(req), [&, n = 0](const model::TokenEvent& e) mutable {
      std::lock_guard lock(mu);
      if (!e.done && n++ == 0 && ++firsts == b) t_first = Clock::now();
      if (e.done) {
        if (!e.error.empty()) failure = e.error;
        if (++dones == b) {
          t_last = Clock::now();
          cv.notify_all();
        }
      }
      return true;
    });
    if (!id) {
      err = id.error().message();
      return std::nullopt;
    }
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return dones == b; });
  if (!failure.empty()) {
    err = failure;
    return std::nullopt;
  }
  if (firsts < b) {
    err = "a sequence ended before its first token";
    return std::nullopt;
  }
  return Timing{std::chrono::duration<double>(t_first - t0).count(),
                std::chrono::duration<double>(t_last - t_first).count()};
}

}  // namespace

bool wants_batched_bench(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--batched") == 0) return true;
  return false;
}

int run_batched_bench(int argc, char** argv) {
  Params p;
  if (auto code = parse(argc, argv, p)) return *code;
  if (Status st = cli::choose_isa(p.isa); !st) {
    std::fprintf(stderr, "qbench: --isa: %s\n", st.error().reason.c_str());
    return 2;
  }
  model::ModelOptions mo;
  mo.n_threads = p.threads;
  auto opened = model::open_model(p.model, mo);
  if (!opened) {
    std::fprintf(stderr, "qbench: %s\n", opened.error().message().c_str());
    return 1;
  }
  const model::Model& m = **opened;
  std::printf("model %s, kernels %s, threads %d, n_batch %d, %d repetition(s)\n\n", p.model.c_str(),
              std::string(kernels::isa_name(kernels::active_isa())).c_str(), m.options.n_threads, p.n_batch, p.reps);
  std::printf("|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |\n");
  std::printf("|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|\n");
  std::mt19937 rng(1234);
  for (int b : p.npl) {
    std::string err;
    std::vector<Timing> runs;
    for (int r = 0; r <= p.reps; ++r) {  // round 0 warms up
      std::optional<Timing> t = run_round(m, p, b, rng, err);
      if (!t) {
        std::fprintf(stderr, "qbench: %s: B = %d: %s\n", p.model.c_str(), b, err.c_str());
        return 1;
      }
      if (r > 0) runs.push_back(*t);
    }
    std::sort(runs.begin(), runs.end(), [](const Timing& x, const Timing& y) { return x.t_pp + x.t_tg < y.t_pp + y.t_tg; });
    const Timing t = runs[runs.size() / 2];
    const double pp_tokens = static_cast<double>(b) * p.npp, tg_tokens = static_cast<double>(b) * (p.ntg - 1);
    std::printf("| %5d | %6d | %4d | %6d | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n", p.npp, p.ntg, b,
                b * (p.npp + p.ntg), t.t_pp, pp_tokens / t.t_pp, t.t_tg, t.t_tg > 0 ? tg_tokens / t.t_tg : 0.0,
                t.t_pp + t.t_tg, (pp_tokens + tg_tokens) / (t.t_pp + t.t_tg));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace qe::bench
