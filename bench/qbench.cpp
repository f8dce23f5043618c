// qbench: kernel x ISA x layer shape x tokens x threads, reported against this machine's roofline.
//   qbench                 default sweep (< 2 min on 2 cores): 1.1B FFN-up, best ISA, 1/64/512 tokens
//   qbench --full          135M / 1.1B / 8B shapes, 1/8/64/512 tokens, every supported ISA
//   qbench --json          results + roofline as one JSON document on stdout
//   qbench --isa=avx2      restrict to one level; other --benchmark_* flags go to Google Benchmark
//   qbench --threads=N     the multi-threaded runs use N threads (default: physical cores)
//   qbench --benchmark_filter=sampler   one sampled token's cost (greedy, penalties, top-k 40, min-p,
//                          no top-k)
//   qbench --roofline      only the roofline (DRAM read, int8, FMA at 1 and --threads=N threads), as JSON
//   qbench -m FILE ...     whole-model tests with llama-bench's flags and output (bench/model_bench.h)
//   qbench --batched -m FILE ...   llama-batched-bench's table through the batching engine
//                          (bench/batched_bench.h)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "batched_bench.h"
#include "formats/blocks.h"
#include "formats/mapped_file.h"
#include "kernels/interleaved.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"
#include "kernels/thread_team.h"
#include "kernels/threads.h"
#include "model/chat_tools.h"
#include "model/grammar.h"
#include "model/sampler.h"
#include "model_bench.h"
#include "roofline.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace qe::bench {
namespace {

using kernels::ActivationBuffer;
using kernels::Isa;
using kernels::KernelTable;
using kernels::WeightView;

Roofline g_roof;

struct Shape { const char* model; int64_t dim, ffn; };
constexpr Shape kShapes[] = {{"135M", 576, 1536}, {"1.1B", 2048, 5632}, {"8B", 4096, 14336}};

// Weights for one (type, rows, cols), in enough copies that a sweep over them exceeds the last-level
// cache twice over (as a real model's layers do): GEMV then streams from DRAM, not from a warm cache.
// q4_0 / q4_1 / q8_0 / q4_K / q5_K / q6_K are in the x16 layout the engine loads them in
// (kernels/interleaved.h).
struct WeightSet {
  std::vector<std::shared_ptr<uint8_t[]>> copies;  // in huge pages, as the engine holds its weights
  WeightView view;
};

WeightSet& weights(GgmlType t, int64_t rows, int64_t cols) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<WeightSet>> cache;
  auto& slot = cache[{static_cast<int>(t), rows, cols}];
  if (slot) return *slot;
  slot = std::make_unique<WeightSet>();
  const int64_t stride = static_cast<int64_t>(ggml_row_bytes(t, static_cast<uint64_t>(cols)));
  const int64_t bytes = stride * rows;
  const int64_t n_copies = std::max<int64_t>(1, static_cast<int64_t>(2 * g_roof.l3_bytes + (64 << 20)) / bytes + 1);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> f(static_cast<size_t>(cols));
  std::vector<uint8_t> first(static_cast<size_t>(bytes));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : f) v = nd(rng);
    if (t == GgmlType::F32) std::memcpy(first.data() + r * stride, f.data(), f.size() * 4);
    else block_traits(t)->from_float(f.data(), first.data() + r * stride, cols);
  }
  slot->view = WeightView{t, rows, cols, first.data(), stride};
  if (kernels::can_interleave(slot->view)) {
    std::vector<uint8_t> packed(first.size());
    slot->view = *kernels::interleave_rows(slot->view, packed);
    first.swap(packed);
  }
  for (int64_t c = 0; c < n_copies; ++c) {
    auto copy = allocate_streamed(first.size(), "qbench", "weights");
    if (!copy) throw std::runtime_error(copy.error().message());
    std::memcpy(copy->get(), first.data(), first.size());
    slot->copies.push_back(std::move(*copy));
  }
  return *slot;
}

void BM_matmul(benchmark::State& state, const KernelTable* k, GgmlType t, int64_t rows, int64_t cols, int64_t tokens,
               int threads) {
  WeightSet& ws = weights(t, rows, cols);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : x) v = nd(rng);
  ActivationBuffer a;
  if (!a.prepare(*kernels::activation_type(t), x.data(), tokens, cols, cols, threads, *k).ok()) {
    state.SkipWithError("prepare failed");
    return;
  }
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  const double macs = static_cast<double>(rows) * cols * tokens;
  const double bytes = static_cast<double>(ws.view.row_stride) * rows + static_cast<double>(a.row_stride()) * tokens +
                       4.0 * rows * tokens;
  const bool quant = t != GgmlType::F16 && t != GgmlType::BF16 && t != GgmlType::F32;
  const int ti = threads > 1 ? 1 : 0;
  // Roofline: the time the slower ceiling allows (bytes at DRAM speed, or MACs at the int8 / FMA peak).
  const double t_mem = bytes / (g_roof.dram_gbs[ti] * 1e9);
  const double t_cmp = quant ? macs / (g_roof.int8_gmacs[ti] * 1e9) : 2 * macs / (g_roof.fma_gflops[ti] * 1e9);
  // A DRAM-bound shape also reads as many bytes with a plain loop after each iteration (untimed by the
  // benchmark): its speed at the same moments, as this VM's DRAM bandwidth drifts 30-100% between runs.
  const bool mem_bound = t_mem >= t_cmp;
  double read_s = 0;
  size_t copy = 0;
  for (auto _ : state) {
    WeightView w = ws.view;
    w.data = ws.copies[copy].get();
    copy = (copy + 1) % ws.copies.size();
    if (!kernels::matmul(w, a, y.data(), threads, *k).ok()) state.SkipWithError("matmul failed");
    benchmark::DoNotOptimize(y.data());
    if (mem_bound) {
      state.PauseTiming();
      read_s += timed_read(bytes, kernels::ThreadTeam::for_this_thread(threads));
      state.ResumeTiming();
    }
  }
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GOP/s"] = benchmark::Counter(2 * macs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roof_s"] = std::max(t_mem, t_cmp);
  state.counters["mem_bound"] = mem_bound ? 1 : 0;
  if (mem_bound && read_s > 0) state.counters["read_s"] = read_s / static_cast<double>(state.iterations());
}

void BM_op(benchmark::State& state, const KernelTable* k, const std::string& op, int64_t n) {
  // One buffer for x, w, y and the rope table: with three vectors and a std::copy between them GCC 12's
  // -Wfree-nonheap-object misfired here at -O3 (a false positive that -Werror turned into a failed build).
  const size_t un = static_cast<size_t>(n);
  std::vector<float> buf(3 * un + 256);
  float *x = buf.data(), *w = x + un, *y = w + un, *c = y + un, *s = c + 128;
  std::vector<uint8_t> q(un * 2);
  for (int64_t i = 0; i < n; ++i) x[i] = std::sin(static_cast<float>(i)), w[i] = 1.0f;
  kernels::rope_cos_sin(17, 128, 10000.0f, c, s);
  for (auto _ : state) {
    if (op == "rms_norm") k->rms_norm(x, w, y, n, 1e-5f);
    else if (op == "softmax") { std::copy(x, x + n, y); k->softmax(y, n, 0.125f); }
    else if (op == "silu_mul") k->silu_mul(x, w, y, n);
    else if (op == "rope") k->rope(y, n / 128, 128, 128, c, s);
    else if (op == "quantize_q8_0") k->quantize_q8_0(x, q.data(), n);
    else if (op == "quantize_q8_K") k->quantize_q8_K(x, q.data(), n);
    benchmark::DoNotOptimize(y);
    benchmark::DoNotOptimize(q.data());
  }
  state.counters["GB/s"] = benchmark::Counter(8.0 * n / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// One thread's flash attention over an f16 cache as a long prompt runs it: `rows` query rows (a tile of
// tokens times the heads sharing a KV head) against 16 whole key blocks (1024 keys, a block's K^T tile
// and values as the cache holds them), every row seeing every key. 4 d flops a (row, key): q . k and p v.
void BM_attention(benchmark::State& state, const KernelTable* k, int64_t d, int64_t rows) {
  constexpr int64_t kBlocks = 16, kB = kernels::kAttnBlock;
  const int64_t ld = (d + kernels::kAttnPad - 1) / kernels::kAttnPad * kernels::kAttnPad;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> kt(static_cast<size_t>(kBlocks * d * kB)), v(static_cast<size_t>(kBlocks * kB * d));
  for (uint16_t& x : kt) x = fp32_to_fp16(nd(rng));
  for (uint16_t& x : v) x = fp32_to_fp16(nd(rng));
  std::vector<float> q(static_cast<size_t>(rows * ld), 0.0f), m(static_cast<size_t>(rows)), l(m.size()),
      o(q.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < d; ++i)
      q[static_cast<size_t>(r * ld + i)] = nd(rng) / std::sqrt(static_cast<float>(d));
  const std::vector<int32_t> nv(static_cast<size_t>(rows), static_cast<int32_t>(kB));
  for (auto _ : state) {
    std::fill(m.begin(), m.end(), -INFINITY);
    std::fill(l.begin(), l.end(), 0.0f);
    std::fill(o.begin(), o.end(), 0.0f);
    for (int64_t b = 0; b < kBlocks; ++b) {
      const uint16_t* ktb = kt.data() + b * d * kB;
      const uint16_t* vb = v.data() + b * kB * d;
      const kernels::AttnBlockRef next{ktb + d * kB, vb + kB * d, kB};
      k->attn_block_f16(rows, d, ld, q.data(), ktb, kB, vb, d, nv.data(), m.data(), l.data(), o.data(),
                        b + 1 < kBlocks ? &next : nullptr);
    }
    benchmark::DoNotOptimize(o.data());
  }
  const double flops = 4.0 * static_cast<double>(d) * static_cast<double>(rows * kBlocks * kB);
  state.counters["GOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roof_s"] = flops / (g_roof.fma_gflops[0] * 1e9);
  state.counters["mem_bound"] = 0;
}

// One token drawn from a vocabulary's row of logits (SmolLM2's 49152, normal with sd 3), the sampler
// warm, 64 tokens in its history: greedy, greedy with the penalties, llama-server's defaults (top-k 40,
// top-p 0.95, min-p 0.05, temperature 0.8), min-p alone (top-k and top-p off) and the defaults without
// top-k (the whole vocabulary sorted for top-p).
void BM_sampler(benchmark::State& state, const std::string& config) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(49152);
  for (float& x : logits) x = nd(rng);
  model::SamplerParams p;
  if (config.rfind("greedy", 0) == 0) p.temp = 0;
  if (config == "greedy_penalties") p.repeat_penalty = 1.1f, p.frequency_penalty = 0.5f;
  if (config == "no_top_k") p.top_k = 0;
  if (config == "min_p_only") p.top_k = 0, p.top_p = 1.0f;
  model::Sampler s(p);
  for (int32_t i = 0; i < 64; ++i) s.accept(i * 7);
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(logits));
}

// A tool reply read back (model/chat_tools.h): an answer of `bytes` (words, escapes, non-ASCII), cut at
// its middle (a stream reads the reply so far at every token, healed where it stops) or whole.
void BM_tool_reply(benchmark::State& state, bool cut) {
  std::string reply = "{\n  \"response\": \"";
  while (reply.size() < static_cast<size_t>(state.range(0)))
    reply += "word \\u00e9 \\\"quoted\\\" caf\xC3\xA9, ";
  reply += "end\"\n}";
  // Cut after a word, as a stream's text is (whole characters).
  const std::string_view text =
      std::string_view(reply).substr(0, cut ? reply.rfind(' ', reply.size() / 2) : reply.size());
  for (auto _ : state) benchmark::DoNotOptimize(model::parse_tool_reply(text, cut));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// A grammar's check of one token over a vocabulary of 49152 (the 256 bytes, then random ASCII words of
// 2-8 characters, a third with a leading space and some with quotes, commas and braces, as a BPE
// vocabulary has), in llama.cpp's JSON grammar: `allowed` = the sampled token passes (the usual case:
// one check), `string` / `key` = it does not, so the whole row is masked (inside a string almost every
// token stays; where a key must start almost none does) and the chain runs again.
void BM_grammar(benchmark::State& state, const std::string& config) {
  static const auto tok = [] {
    tokenizer::Vocab v = tokenizer::default_vocab(tokenizer::VocabModel::kBpe, "gpt2");
    for (int b = 0; b < 256; ++b) v.tokens.push_back(tokenizer::gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
    std::mt19937 rng(7);
    const std::string punct = "\",{}:[]";
    std::set<std::string> seen;
    while (v.tokens.size() < 49152) {
      std::string w = rng() % 3 == 0 ? "\xC4\xA0" : "";  // GPT-2's space
      if (rng() % 8 == 0) w += punct[rng() % punct.size()];
      for (uint32_t n = 2 + rng() % 7; n > 0; --n) w += static_cast<char>('a' + rng() % 26);
      if (seen.insert(w).second) v.tokens.push_back(w);
    }
    tokenizer::resolve_special_tokens(v);
    return std::make_shared<const tokenizer::Tokenizer>(
        std::move(tokenizer::Tokenizer::create(std::move(v))).value());
  }();
  static const auto vocab = std::make_shared<const model::GrammarVocab>(*tok);
  const char* json_gbnf = R"(root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,15})? ws
ws ::= | " " | "\n" [ \t]{0,20})";
  model::SamplerParams p;
  p.temp = 0;
  p.grammar = *model::Grammar::parse(json_gbnf);
  p.grammar_vocab = vocab;
  std::vector<float> logits(49152, 0.0f);
  model::Sampler s(p);
  const std::string text = config == "key" ? "{" : "{\"ab";  // where the next token is drawn
  // The row's best: a plain word (allowed in a string), or a byte no JSON text takes here.
  logits[config == "allowed" ? 300 : 0x01] = 5.0f;
  for (auto _ : state) {
    // Each draw from a state the matcher has not read from yet, as every token of a generation is (it
    // keeps what it worked out about a state until it moves on).
    state.PauseTiming();
    s.reset_grammar();
    for (char c : text) s.accept(static_cast<uint8_t>(c));
    state.ResumeTiming();
    benchmark::DoNotOptimize(s.sample(logits));
  }
}

// Collects every run for the closing roofline table (and --json), forwarding to the console reporter.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal: a redirected file gets plain text (ConsoleReporter's default is colour).
  explicit TableReporter(bool quiet)
      : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular), quiet_(quiet) {}
  bool ReportContext(const Context& c) override { return quiet_ ? true : ConsoleReporter::ReportContext(c); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs)
      if (r.run_type == Run::RT_Iteration && !r.error_occurred) runs_[r.benchmark_name()].push_back(r);
    if (!quiet_) ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, std::vector<Run>> runs_;

 private:
  bool quiet_;
};

// qbench's own flags first, then Google Benchmark's (benchmark::Initialize calls this for --help).
void print_help() {
  std::printf(
      "usage:\n"
      "  qbench [options] [Google Benchmark flags]   kernel benchmarks against this machine's roofline\n"
      "  qbench -m FILE[,FILE...] [flags]           whole-model tests with llama-bench's flags and output\n"
      "                                              (qbench -m FILE --help lists them)\n"
      "\n"
      "options:\n"
      "  --full            135M / 1.1B / 8B shapes, 1/8/64/512 tokens, every supported ISA\n"
      "                    (default: 1.1B FFN-up, best ISA, 1/64/512 tokens; < 2 min on 2 cores)\n"
      "  --isa=<level>     only this kernel level: ref, avx2, avx512, neon (default: see --full)\n"
      "  --threads=<n>     threads of the multi-threaded runs and the roofline (default: %d, the physical "
      "cores)\n"
      "  --json            results and roofline as one JSON document on stdout (default: tables)\n"
      "  --roofline        only the roofline (DRAM read, int8, FMA at 1 and --threads), as JSON\n"
      "\n"
      "Google Benchmark's flags (qbench's defaults: --benchmark_min_time=0.1 --benchmark_repetitions=3;\n"
      "colour only when stdout is a terminal):\n",
      kernels::default_thread_count());
  benchmark::PrintDefaultHelp();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

}  // namespace
}  // namespace qe::bench

int main(int argc, char** argv) {
  using namespace qe;
  using namespace qe::bench;
  if (wants_batched_bench(argc, argv)) return run_batched_bench(argc, argv);
  if (wants_model_bench(argc, argv)) return run_model_bench(argc, argv);
  bool full = false, json = false, roofline_only = false;
  int n_threads_flag = 0;
  std::string only_isa;
  std::vector<char*> rest{argv[0]};
  bool has_min_time = false, has_reps = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--full") full = true;
    else if (a == "--json") json = true;
    else if (a == "--roofline") roofline_only = true;
    else if (a.rfind("--isa=", 0) == 0) only_isa = a.substr(6);
    else if (a.rfind("--threads=", 0) == 0) n_threads_flag = std::atoi(a.c_str() + 10);
    else {
      has_min_time |= a.rfind("--benchmark_min_time", 0) == 0;
      has_reps |= a.rfind("--benchmark_repetitions", 0) == 0;
      rest.push_back(argv[i]);
    }
  }
  if (roofline_only) {  // for scripts (bench/vs-llamacpp.sh): no kernel runs, one JSON object on stdout
    const int nt = n_threads_flag > 0 ? n_threads_flag : kernels::default_thread_count();
    const Roofline rf = measure_roofline(nt);
    const nlohmann::json j = {{"kernels", kernels::describe_isa()}, {"threads", nt},
                              {"dram_read_gbs", {rf.dram_gbs[0], rf.dram_gbs[1]}},
                              {"int8_gmacs", {rf.int8_gmacs[0], rf.int8_gmacs[1]}},
                              {"fma_gflops", {rf.fma_gflops[0], rf.fma_gflops[1]}},
                              {"peak_isa", rf.peak_isa}, {"last_level_cache_bytes", rf.l3_bytes}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::string min_time = "--benchmark_min_time=0.1", reps = "--benchmark_repetitions=3";
  int n_reps = 3;
  for (char* r : rest)
    if (std::string(r).rfind("--benchmark_repetitions=", 0) == 0) n_reps = std::atoi(r + 24);
  if (!has_min_time) rest.push_back(min_time.data());
  if (!has_reps) rest.push_back(reps.data());
  int rargc = static_cast<int>(rest.size());
  benchmark::Initialize(&rargc, rest.data(), print_help);
  if (benchmark::ReportUnrecognizedArguments(rargc, rest.data())) return 2;

  const int nthreads = n_threads_flag > 0 ? n_threads_flag : kernels::default_thread_count();
  std::fprintf(stderr, "%s; threads: %d physical cores\nmeasuring roofline...\n", kernels::describe_isa().c_str(),
               nthreads);
  g_roof = measure_roofline(nthreads);
  std::fprintf(stderr, "peaks use %s; last-level cache %.0f MiB\n", g_roof.peak_isa, g_roof.l3_bytes / (1 << 20));
  std::fprintf(stderr, "roofline: DRAM read %.1f / %.1f GB/s, int8 %.1f / %.1f GMAC/s, f32 FMA %.1f / %.1f GFLOP/s (1 / %d threads)\n",
               g_roof.dram_gbs[0], g_roof.dram_gbs[1], g_roof.int8_gmacs[0], g_roof.int8_gmacs[1],
               g_roof.fma_gflops[0], g_roof.fma_gflops[1], nthreads);

  std::vector<Isa> isas;
  if (!only_isa.empty()) {
    const auto isa = kernels::isa_from_name(only_isa);
    if (!isa || !kernels::isa_supported(*isa)) {
      std::fprintf(stderr, "qbench: --isa=%s is not supported on this CPU\n", only_isa.c_str());
      return 2;
    }
    isas.push_back(*isa);
  } else if (full) {
    for (Isa i : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon})
      if (kernels::isa_supported(i)) isas.push_back(i);
  } else {
    isas.push_back(kernels::best_isa());
  }

  const GgmlType types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K,
                            GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::F16, GgmlType::BF16};
  std::vector<int64_t> tokens = full ? std::vector<int64_t>{1, 8, 64, 512} : std::vector<int64_t>{1, 64, 512};
  std::vector<int> threads = {1};
  if (nthreads > 1) threads.push_back(nthreads);
  for (Isa isa : isas) {
    const KernelTable* k = kernels::kernel_table(isa);
    for (const Shape& sh : kShapes) {
      if (!full && std::string(sh.model) != "1.1B") continue;
      for (GgmlType t : types)
        for (int64_t tok : tokens)
          for (int th : threads) {
            if (isa == Isa::ref && tok > 8) continue;  // scalar GEMM of 512 tokens takes minutes
            if (sh.dim % ggml_type_info(t).block_size != 0) continue;  // 135M's 576 is no k-quant row
            const std::string name = std::string("matmul/") + std::string(ggml_type_name(t)) + "/" +
                                     std::string(kernels::isa_name(isa)) + "/" + sh.model + "_ffn_up/" +
                                     std::to_string(tok) + "tok/" + std::to_string(th) + "thr";
            benchmark::RegisterBenchmark(name.c_str(), BM_matmul, k, t, sh.ffn, sh.dim, tok, th)
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
      for (const char* op : {"rms_norm", "softmax", "silu_mul", "rope", "quantize_q8_0", "quantize_q8_K"}) {
        const int64_t n = std::string(op) == "silu_mul" ? sh.ffn : sh.dim;
        benchmark::RegisterBenchmark((std::string("op/") + op + "/" + std::string(kernels::isa_name(isa)) + "/" +
                                      sh.model + "/" + std::to_string(n)).c_str(),
                                     BM_op, k, std::string(op), n)
            ->Unit(benchmark::kNanosecond);
      }
    }
  }

  for (Isa isa : isas)
    for (int64_t d : {64, 128})
      for (int64_t rows : {4, 8, 16, 64})
        benchmark::RegisterBenchmark((std::string("op/attention_f16/") + std::string(kernels::isa_name(isa)) +
                                      "/d" + std::to_string(d) + "/" + std::to_string(rows) + "rows/1thr")
                                         .c_str(),
                                     BM_attention, kernels::kernel_table(isa), d, rows)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);

  for (const char* config : {"greedy", "greedy_penalties", "defaults", "min_p_only", "no_top_k"})
    benchmark::RegisterBenchmark((std::string("sampler/") + config + "/49152").c_str(), BM_sampler,
                                 std::string(config))
        ->Unit(benchmark::kMicrosecond);

  for (const char* config : {"allowed", "string", "key"})
    benchmark::RegisterBenchmark((std::string("sampler/grammar_json_") + config + "/49152").c_str(),
                                 BM_grammar, std::string(config))
        ->Unit(benchmark::kMicrosecond);
  for (const bool cut : {true, false})
    benchmark::RegisterBenchmark(cut ? "tool_reply/cut" : "tool_reply/whole", BM_tool_reply, cut)
        ->Arg(1024)
        ->Arg(8192)
        ->Unit(benchmark::kMicrosecond);

  TableReporter rep(json);
  benchmark::RunSpecifiedBenchmarks(&rep);

  nlohmann::json out;
  out["machine"] = {{"kernels", kernels::describe_isa()}, {"threads", nthreads},
                    {"dram_read_gbs", {g_roof.dram_gbs[0], g_roof.dram_gbs[1]}},
                    {"int8_gmacs", {g_roof.int8_gmacs[0], g_roof.int8_gmacs[1]}},
                    {"fma_gflops", {g_roof.fma_gflops[0], g_roof.fma_gflops[1]}},
                    {"peak_isa", g_roof.peak_isa}, {"last_level_cache_bytes", g_roof.l3_bytes}};
  out["results"] = nlohmann::json::array();
  // roof%: against the roofline measured at the start. vs read: a DRAM-bound kernel's time against the
  // plain read of the same bytes run between its iterations (same threads, same moments).
  std::printf(json ? "" : "\nRoofline (medians of %d)\n%-48s %10s %9s %9s %7s %8s  %s\n", n_reps, "benchmark",
              "time_us", "GB/s", "GOP/s", "roof%", "vs read", "bound");
  const auto pct = [](const std::vector<double>& v) {
    return v.empty() ? std::string("-") : std::to_string(static_cast<int>(std::lround(median(v)))) + "%";
  };
  for (auto& [name, runs] : rep.runs_) {
    std::vector<double> us, gbs, gops, roof, vs_read;
    bool mem = false;
    for (const auto& r : runs) {
      const double s = r.real_accumulated_time / static_cast<double>(r.iterations);  // seconds per iteration
      us.push_back(s * 1e6);
      gbs.push_back(r.counters.count("GB/s") ? double(r.counters.at("GB/s")) : 0);
      gops.push_back(r.counters.count("GOP/s") ? double(r.counters.at("GOP/s")) : 0);
      if (r.counters.count("roof_s")) {
        roof.push_back(100.0 * double(r.counters.at("roof_s")) / s);
        mem = double(r.counters.at("mem_bound")) > 0;
      }
      if (r.counters.count("read_s")) vs_read.push_back(100.0 * double(r.counters.at("read_s")) / s);
    }
    nlohmann::json row = {{"name", name}, {"time_us", median(us)}, {"gbs", median(gbs)}, {"gops", median(gops)},
                          {"roofline_pct", median(roof)}, {"bound", roof.empty() ? "" : mem ? "memory" : "compute"}};
    if (!vs_read.empty()) row["vs_read_pct"] = median(vs_read);
    out["results"].push_back(row);
    if (!json)
      std::printf("%-48s %10.1f %9.2f %9.2f %7s %8s  %s\n", name.c_str(), median(us), median(gbs), median(gops),
                  pct(roof).c_str(), pct(vs_read).c_str(), roof.empty() ? "" : mem ? "DRAM" : "compute");
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  benchmark::Shutdown();
  return 0;
}
