// qbench -m FILE: llama-bench's measurements through this engine's API, with llama-bench's flags, test
// names and output, so that `qbench -m F` and `llama-bench -m F` print rows that line up.
//
// The tests are llama-bench's (tools/llama-bench/llama-bench.cpp of the llama.cpp that llama-cpp-python
// 0.3.16 vendors):
//   ppN      N random token ids (BOS first when the vocabulary adds one) evaluated from an empty KV cache
//            in batches of min(-b, -ub) tokens: prompt processing, the GEMM path.
//   tgN      N tokens decoded one at a time from an empty cache (BOS first, then random ids): decode,
//            the GEMV path, which reads every weight once per token.
//   ppN+tgM  (-pg N,M) both, timed together and counted as N+M tokens.
// Each test gets its own context of n_ctx = N + M + depth positions; one warm-up run (the whole prompt
// for pp, one token for tg) then -r repetitions, each from a cleared cache (after -d depth tokens,
// untimed). t/s = tokens / seconds per repetition; the table shows their mean ± sample standard
// deviation, as llama-bench does. Instances are ordered as llama-bench orders them (model, batch,
// ubatch, threads, depth, then the pp, tg and pg tests), so the same command line gives the same rows.
//
// The model column is llama.cpp's description (llama_model_desc: architecture, llama.cpp's size class
// from the layer count, file type from general.file_type or guessed from the commonest tensor type);
// size and params sum every tensor of the file as llama_model_size / llama_model_n_params do; the
// backend names the kernel level, "CPU (avx512)".
#include "model_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli/isa_choice.h"
#include "kernels/kernel_table.h"
#include "kernels/threads.h"
#include "model/context.h"
#include "model/model.h"
#include "roofline.h"

namespace qe::bench {
namespace {

struct Params {
  std::vector<std::string> models;
  std::vector<int> n_prompt, n_gen, n_depth, n_batch, n_ubatch, n_threads;
  std::vector<std::pair<int, int>> n_pg;
  int reps = 5;
  int delay_s = 0;
  bool warmup = true;
  bool progress = false;
  bool verbose = false;
  std::string output = "md";
  // Ours, not llama-bench's: the kernel level, the numerics and the load-time repack (qrun's flags).
  std::string isa;
  std::string numerics = "fast";
  bool repack = true;
  // Ours: each tg test's tokens set against a DRAM read of the bytes they stream (see run_gen).
  bool vs_read = false;
};

// llama-bench's defaults, except the thread count: this engine's default (physical cores).
const std::vector<int> kDefaultPrompt{512}, kDefaultGen{128}, kDefaultDepth{0}, kDefaultBatch{2048},
    kDefaultUbatch{512};

void print_usage() {
  std::printf(
      "usage: qbench -m FILE[,FILE...] [options]   (llama-bench's tests, flags and output)\n"
      "\n"
      "options:\n"
      "  -h, --help\n"
      "  -r, --repetitions <n>          repetitions of each test (default: 5)\n"
      "  --delay <0...N>                seconds to wait before each test (default: 0)\n"
      "  -o, --output <md|json|jsonl>   output format on stdout (default: md)\n"
      "  -v, --verbose                  kernel level and progress on stderr\n"
      "  --progress                     print test progress on stderr\n"
      "  --no-warmup                    skip the warm-up run before each test\n"
      "\n"
      "test parameters:\n"
      "  -m, --model <filename>\n"
      "  -p, --n-prompt <n>             (default: 512; 0 skips)\n"
      "  -n, --n-gen <n>                (default: 128; 0 skips)\n"
      "  -pg <pp,tg>                    (default: none)\n"
      "  -d, --n-depth <n>              (default: 0)\n"
      "  -b, --batch-size <n>           (default: 2048)\n"
      "  -ub, --ubatch-size <n>         (default: 512; a forward pass takes min(b, ub) tokens)\n"
      "  -t, --threads <n>              (default: %d, the physical cores)\n"
      "\n"
      "this engine's:\n"
      "  --isa <ref|avx2|avx512|neon>   kernel level (default: QE_ISA, else the best the CPU has)\n"
      "  --numerics <fast|llama.cpp>    (default: fast)\n"
      "  -nr, --no-repack               keep the file's weight layout\n"
      "  --vs-read                      tg tests: after each token, a DRAM read of the weight bytes it\n"
      "                                 streamed; adds \"vs read\", decode against read at the same moments\n"
      "\n"
      "Multiple values can be given for each test parameter by separating them with ','\n"
      "or by giving the flag several times. Ranges: 'first-last', 'first-last+step', 'first-last*mult'.\n",
      kernels::default_thread_count());
}

std::vector<std::string> split(const std::string& s, char delim) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(delim, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

std::optional<int> parse_nonneg(const std::string& s) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::atoi(s.c_str());
}

// llama-bench's int lists: "a,b,c" with ranges "first-last", "first-last+step", "first-last*mult".
std::optional<std::vector<int>> parse_int_range(const std::string& s) {
  std::vector<int> out;
  for (const std::string& part : split(s, ',')) {
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      const auto v = parse_nonneg(part);
      if (!v) return std::nullopt;
      out.push_back(*v);
      continue;
    }
    const size_t op_at = part.find_first_of("+*", dash);
    const auto first = parse_nonneg(part.substr(0, dash));
    const auto last = parse_nonneg(
        part.substr(dash + 1, op_at == std::string::npos ? std::string::npos : op_at - dash - 1));
    const auto step =
        op_at == std::string::npos ? std::optional<int>(1) : parse_nonneg(part.substr(op_at + 1));
    const char op = op_at == std::string::npos ? '+' : part[op_at];
    if (!first || !last || !step) return std::nullopt;
    for (int64_t i = *first; i <= *last;) {
      out.push_back(static_cast<int>(i));
      const int64_t next = op == '+' ? i + *step : i * *step;
      if (next <= i) return std::nullopt;  // a step that never reaches `last`
      i = next;
    }
  }
  return out;
}

// Returns the exit code when parsing ends the program (help: 0, error: 2).
std::optional<int> parse_args(int argc, char** argv, Params& p) {
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "qbench: %s (qbench -m FILE --help lists the flags)\n", msg.c_str());
    return std::optional<int>(2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) std::replace(arg.begin(), arg.end(), '_', '-');  // as llama-bench
    if (arg == "-h" || arg == "--help") {
      print_usage();
      return 0;
    }
    // clang-format off
    static const std::set<std::string> switches = {"-v", "--verbose", "--progress", "--no-warmup", "-nr",
                                                   "--no-repack", "--vs-read"};
    static const std::set<std::string> with_value = {
        "-m", "--model", "-p", "--n-prompt", "-n", "--n-gen", "-d", "--n-depth", "-b", "--batch-size",
        "-ub", "--ubatch-size", "-t", "--threads", "-pg", "-r", "--repetitions", "--delay", "-o", "--output",
        "--isa", "--numerics"};
    // llama-bench's GPU options (each takes a value there, a list such as -ngl 0,99): one note, value dropped.
    static const std::set<std::string> gpu_only = {
        "-ngl", "--n-gpu-layers", "-fa", "--flash-attn", "-sm", "--split-mode", "-mg", "--main-gpu", "-ts",
        "--tensor-split", "-nkvo", "--no-kv-offload", "-dev", "--device"};
    // clang-format on
    if (gpu_only.count(arg) > 0) {
      if (i + 1 >= argc) return fail(arg + ": missing value");
      ++i;
      std::fprintf(stderr, "qbench: note: %s does nothing on this CPU engine; ignored\n", arg.c_str());
      continue;
    }
    const bool takes_value = with_value.count(arg) > 0;
    if (!takes_value && switches.count(arg) == 0) return fail("unknown option " + std::string(argv[i]));
    if (takes_value && i + 1 >= argc) return fail(arg + ": missing value");
    const std::string val = takes_value ? argv[i + 1] : "";
    if (takes_value) ++i;
    auto ints = [&](std::vector<int>& dst, bool positive) -> bool {
      const auto v = parse_int_range(val);
      if (!v || v->empty()) return false;
      if (positive && std::any_of(v->begin(), v->end(), [](int x) { return x < 1; })) return false;
      dst.insert(dst.end(), v->begin(), v->end());
      return true;
    };
    if (arg == "-m" || arg == "--model") {
      for (const std::string& m : split(val, ','))
        if (!m.empty()) p.models.push_back(m);
    } else if (arg == "-p" || arg == "--n-prompt") {
      if (!ints(p.n_prompt, false)) return fail(arg + ": '" + val + "' is not a list of token counts");
    } else if (arg == "-n" || arg == "--n-gen") {
      if (!ints(p.n_gen, false)) return fail(arg + ": '" + val + "' is not a list of token counts");
    } else if (arg == "-d" || arg == "--n-depth") {
      if (!ints(p.n_depth, false)) return fail(arg + ": '" + val + "' is not a list of token counts");
    } else if (arg == "-b" || arg == "--batch-size") {
      if (!ints(p.n_batch, true)) return fail(arg + ": '" + val + "' is not a list of sizes >= 1");
    } else if (arg == "-ub" || arg == "--ubatch-size") {
      if (!ints(p.n_ubatch, true)) return fail(arg + ": '" + val + "' is not a list of sizes >= 1");
    } else if (arg == "-t" || arg == "--threads") {
      if (!ints(p.n_threads, true)) return fail(arg + ": '" + val + "' is not a list of thread counts >= 1");
    } else if (arg == "-pg") {
      const auto v = split(val, ',');
      const auto pp = v.size() == 2 ? parse_nonneg(v[0]) : std::nullopt;
      const auto tg = v.size() == 2 ? parse_nonneg(v[1]) : std::nullopt;
      if (!pp || !tg) return fail("-pg: '" + val + "' is not <pp,tg>");
      p.n_pg.emplace_back(*pp, *tg);
    } else if (arg == "-r" || arg == "--repetitions") {
      const auto v = parse_nonneg(val);
      if (!v || *v < 1) return fail(arg + ": '" + val + "' is not a count >= 1");
      p.reps = *v;
    } else if (arg == "--delay") {
      const auto v = parse_nonneg(val);
      if (!v) return fail("--delay: '" + val + "' is not a number of seconds");
      p.delay_s = *v;
    } else if (arg == "-o" || arg == "--output") {
      if (val != "md" && val != "json" && val != "jsonl")
        return fail(arg + ": '" + val + "' is not one of md, json, jsonl");
      p.output = val;
    } else if (arg == "--isa") {
      p.isa = val;
    } else if (arg == "--numerics") {
      if (val != "fast" && val != "llama.cpp")
        return fail("--numerics: '" + val + "' is not one of fast, llama.cpp");
      p.numerics = val;
    } else if (arg == "-v" || arg == "--verbose") {
      p.verbose = true;
    } else if (arg == "--progress") {
      p.progress = true;
    } else if (arg == "--no-warmup") {
      p.warmup = false;
    } else if (arg == "-nr" || arg == "--no-repack") {
      p.repack = false;
    } else if (arg == "--vs-read") {
      p.vs_read = true;
    }
  }
  if (p.models.empty()) return fail("-m: no model file given");
  if (p.n_prompt.empty()) p.n_prompt = kDefaultPrompt;
  if (p.n_gen.empty()) p.n_gen = kDefaultGen;
  if (p.n_depth.empty()) p.n_depth = kDefaultDepth;
  if (p.n_batch.empty()) p.n_batch = kDefaultBatch;
  if (p.n_ubatch.empty()) p.n_ubatch = kDefaultUbatch;
  if (p.n_threads.empty()) p.n_threads = {kernels::default_thread_count()};
  return std::nullopt;
}

// ---- What llama.cpp calls the model.

// llama_model_ftype_name of LLAMA_FTYPE_* (llama.h), "unknown, may not work" for an id it lacks.
std::string ftype_name(uint32_t id) {
  // clang-format off
  static const std::map<uint32_t, const char*> names = {
      {0, "all F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"}, {8, "Q5_0"}, {9, "Q5_1"},
      {10, "Q2_K - Medium"}, {11, "Q3_K - Small"}, {12, "Q3_K - Medium"}, {13, "Q3_K - Large"},
      {14, "Q4_K - Small"}, {15, "Q4_K - Medium"}, {16, "Q5_K - Small"}, {17, "Q5_K - Medium"}, {18, "Q6_K"},
      {19, "IQ2_XXS - 2.0625 bpw"}, {20, "IQ2_XS - 2.3125 bpw"}, {21, "Q2_K - Small"},
      {22, "IQ3_XS - 3.3 bpw"}, {23, "IQ3_XXS - 3.0625 bpw"}, {24, "IQ1_S - 1.5625 bpw"},
      {25, "IQ4_NL - 4.5 bpw"}, {26, "IQ3_S - 3.4375 bpw"}, {27, "IQ3_S mix - 3.66 bpw"},
      {28, "IQ2_S - 2.5 bpw"}, {29, "IQ2_M - 2.7 bpw"}, {30, "IQ4_XS - 4.25 bpw"}, {31, "IQ1_M - 1.75 bpw"},
      {32, "BF16"}, {36, "TQ1_0 - 1.69 bpw ternary"}, {37, "TQ2_0 - 2.06 bpw ternary"}, {38, "MXFP4 MoE"}};
  // clang-format on
  const auto it = names.find(id);
  return it == names.end() ? "unknown, may not work" : it->second;
}

// llama-model-loader's guess when general.file_type is absent: the file type of the commonest tensor
// type (the first to reach the highest count in name order, as its std::map walk finds it).
std::string guessed_ftype(const GgufFile& f) {
  std::vector<const GgufTensorInfo*> by_name;
  for (const auto& t : f.tensors()) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::map<GgmlType, int> count;
  GgmlType best = GgmlType::F32;
  int best_n = 0;
  for (const auto* t : by_name)
    if (++count[t->type] > best_n) best_n = count[t->type], best = t->type;
  static const std::map<GgmlType, uint32_t> ftype_of = {
      {GgmlType::F32, 0},     {GgmlType::F16, 1},     {GgmlType::BF16, 32},    {GgmlType::Q4_0, 2},
      {GgmlType::Q4_1, 3},    {GgmlType::Q5_0, 8},    {GgmlType::Q5_1, 9},     {GgmlType::Q8_0, 7},
      {GgmlType::Q2_K, 10},   {GgmlType::Q3_K, 12},   {GgmlType::Q4_K, 15},    {GgmlType::Q5_K, 17},
      {GgmlType::Q6_K, 18},   {GgmlType::TQ1_0, 36},  {GgmlType::TQ2_0, 37},   {GgmlType::IQ2_XXS, 19},
      {GgmlType::IQ2_XS, 20}, {GgmlType::IQ2_S, 28},  {GgmlType::IQ3_XXS, 23}, {GgmlType::IQ1_S, 24},
      {GgmlType::IQ1_M, 31},  {GgmlType::IQ4_NL, 25}, {GgmlType::IQ4_XS, 30},  {GgmlType::IQ3_S, 26}};
  const auto it = ftype_of.find(best);
  return ftype_name(it == ftype_of.end() ? 0 : it->second) + " (guessed)";
}

// llama.cpp's size class of a (dense) llama-architecture model, from llm_load_hparams: by layer count.
std::string llama_size_class(const model::Config& c) {
  // clang-format off
  switch (c.n_layers) {
    case 16: case 22: return "1B";
    case 26: case 28: return "3B";
    case 30: return "256M";
    case 32: return c.n_vocab == 49152 ? "3B" : c.n_vocab < 40000 ? "7B" : "8B";
    case 36: return "8B";
    case 40: return "13B";
    case 48: return "34B";
    case 60: return "30B";
    case 80: return c.n_heads == c.n_kv_heads ? "65B" : "70B";
    default: return "?B";
  }
  // clang-format on
}

struct ModelInfo {
  std::string desc;          // "llama 1B Q4_0"
  uint64_t size = 0;         // bytes of every tensor
  uint64_t n_params = 0;     // elements of every tensor
  uint64_t token_bytes = 0;  // bytes of weights one decoded token reads
};

ModelInfo describe(const model::Model& m) {
  ModelInfo info;
  const GgufFile& f = m.file;
  const auto arch = f.get_string("general.architecture");
  const auto ft = f.get_int("general.file_type");
  info.desc = (arch ? *arch : std::string("llama")) + " " + llama_size_class(m.config) + " " +
              (ft ? ftype_name(static_cast<uint32_t>(*ft)) : guessed_ftype(f));
  const GgufTensorInfo* embd = nullptr;
  bool tied = true;
  for (const auto& t : f.tensors()) {
    info.size += t.n_bytes;
    info.n_params += t.n_elements;
    if (t.name == "token_embd.weight")
      embd = &t;
    else
      info.token_bytes += t.n_bytes;
    if (t.name == "output.weight") tied = false;
  }
  // Every tensor once, but of token_embd one row, or all of it when it is also the output projection.
  if (embd != nullptr) info.token_bytes += tied ? embd->n_bytes : embd->n_bytes / embd->n_rows();
  return info;
}

// ggml's CPU device description: /proc/cpuinfo's first "model name".
std::string cpu_info() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t b = line.find_first_not_of(" \t", colon + 1), e = line.find_last_not_of(" \t\r");
    return b == std::string::npos ? "CPU" : line.substr(b, e - b + 1);
  }
  return "CPU";
}

// ---- One test and its numbers.

struct Test {
  std::string model_filename;
  ModelInfo info;
  int n_batch = 0, n_ubatch = 0, n_threads = 0, n_prompt = 0, n_gen = 0, n_depth = 0;
  std::string test_time;
  std::vector<uint64_t> samples_ns;
  std::vector<double> read_s;  // --vs-read: each repetition's reads, in seconds (tg tests)

  std::vector<double> ts() const {
    std::vector<double> v;
    for (uint64_t ns : samples_ns) v.push_back(1e9 * (n_prompt + n_gen) / static_cast<double>(ns));
    return v;
  }
  // --vs-read: each repetition's decode speed against its reads' (1 = at the speed of a plain read).
  std::vector<double> vs_read() const {
    std::vector<double> v;
    for (size_t i = 0; i < read_s.size(); ++i)
      v.push_back(read_s[i] * 1e9 / static_cast<double>(samples_ns[i]));
    return v;
  }
  std::string name() const {
    std::string s = n_gen == 0      ? "pp" + std::to_string(n_prompt)
                    : n_prompt == 0 ? "tg" + std::to_string(n_gen)
                                    : "pp" + std::to_string(n_prompt) + "+tg" + std::to_string(n_gen);
    return n_depth > 0 ? s + " @ d" + std::to_string(n_depth) : s;
  }
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1), 0 for fewer than two samples: llama-bench's stdev.
double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::string utc_now() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%FT%TZ", &tm);
  return buf;
}

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// llama-bench's test_prompt: n tokens at the context's position in batches of the context's n_batch,
// the first a BOS (when the vocabulary adds one), the rest random ids.
Status run_prompt(model::Context& ctx, int n, std::mt19937& rng) {
  const model::Model& m = ctx.model();
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(m.config.n_vocab - 1));
  const bool bos = m.tok.add_bos() && m.tok.bos() >= 0;
  std::vector<int32_t> batch;
  for (int done = 0; done < n;) {
    const int k = static_cast<int>(std::min<int64_t>(n - done, ctx.n_batch()));
    batch.resize(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) batch[static_cast<size_t>(i)] = any(rng);
    if (done == 0 && bos) batch[0] = m.tok.bos();
    if (auto r = ctx.decode(batch, false); !r) return r.error();
    done += k;
  }
  return {};
}

// --vs-read: after each token, a read of the bytes it streamed (bytes, on the context's team). The decode
// time (tokens alone) and the read time add up here. Token by token, so both see the same moments of
// a drifting machine; each token's weights come from DRAM either way (a model is read in order, and the
// read flushes the caches as a model larger than them does).
struct ReadAlong {
  double bytes = 0;
  kernels::ThreadTeam* team = nullptr;
  uint64_t decode_ns = 0;
  double read_s = 0;
};

// llama-bench's test_gen: n single-token forward passes, BOS (or a random id) first, then random ids.
Status run_gen(model::Context& ctx, int n, std::mt19937& rng, ReadAlong* along = nullptr) {
  const model::Model& m = ctx.model();
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(m.config.n_vocab - 1));
  int32_t tok = m.tok.add_bos() && m.tok.bos() >= 0 ? m.tok.bos() : any(rng);
  for (int i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    if (auto r = ctx.decode(std::span<const int32_t>(&tok, 1), false); !r) return r.error();
    if (along) {
      along->decode_ns += now_ns() - t0;
      along->read_s += timed_read(along->bytes, *along->team);
    }
    tok = any(rng);
  }
  return {};
}

// ---- Output, as llama-bench prints it.

class Printer {
 public:
  Printer(const Params& p, std::string backend) : p_(p), backend_(std::move(backend)), cpu_(cpu_info()) {
    fields_ = {"model", "size", "params", "backend", "threads"};
    if (p.n_batch != kDefaultBatch) fields_.push_back("n_batch");
    if (p.n_ubatch != kDefaultUbatch) fields_.push_back("n_ubatch");
    fields_.insert(fields_.end(), {"test", "t/s"});
    if (p.vs_read) fields_.push_back("vs read");
  }

  void header() {
    if (p_.output == "json") std::printf("[\n");
    if (p_.output != "md") return;
    std::string line = "|", rule = "|";
    for (const auto& f : fields_) {
      const int w = width(f);
      cell(line, pad(f, w));
      cell(rule, std::string(static_cast<size_t>(std::abs(w) - 1), '-').append(w > 0 ? ":" : "-"));
    }
    std::printf("%s\n%s\n", line.c_str(), rule.c_str());
  }

  void row(const Test& t) {
    if (p_.output == "md") {
      std::string line = "|";
      for (const auto& f : fields_) {
        const std::string v = value(t, f);
        cell(line, pad(v, width(f) + (v.find("±") != std::string::npos ? 1 : 0)));
      }
      std::printf("%s\n", line.c_str());  // "±" is two bytes, one column
    } else {
      const std::string obj = to_json(t).dump(p_.output == "json" ? 2 : -1);
      if (p_.output == "json")
        std::printf("%s  %s", first_ ? "" : ",\n", indent(obj).c_str());
      else
        std::printf("%s\n", obj.c_str());
    }
    first_ = false;
    std::fflush(stdout);
  }

  void footer() {
    if (p_.output == "json") std::printf("\n]\n");
    if (p_.output == "md") std::printf("\nbuild: qengine qbench (%s)\n", kernels::describe_isa().c_str());
  }

 private:
  // llama-bench's column widths: negative = left-aligned (text), positive = right-aligned (numbers).
  int width(const std::string& f) const {
    if (f == "model") return -30;
    if (f == "t/s") return 20;
    if (f == "size" || f == "params") return 10;
    if (f == "threads" || f == "n_batch") return 7;
    if (f == "n_ubatch") return 8;
    if (f == "test") return 15;
    if (f == "vs read") return 10;
    if (f == "backend") return -static_cast<int>(std::max<size_t>(10, backend_.size()));
    return 10;
  }
  static void cell(std::string& line, const std::string& s) { line.append(" ").append(s).append(" |"); }
  static std::string pad(const std::string& s, int w) {
    const size_t n = static_cast<size_t>(std::abs(w));
    if (s.size() >= n) return s;
    return w < 0 ? s + std::string(n - s.size(), ' ') : std::string(n - s.size(), ' ') + s;
  }
  static std::string indent(const std::string& s) {  // nested two more spaces inside the array
    std::string out;
    for (char c : s) out += c == '\n' ? std::string("\n  ") : std::string(1, c);
    return out;
  }
  std::string value(const Test& t, const std::string& f) const {
    char buf[128];
    if (f == "model") return t.info.desc;
    if (f == "size") {
      const double s = static_cast<double>(t.info.size);
      if (t.info.size < (1ull << 30))
        std::snprintf(buf, sizeof(buf), "%.2f MiB", s / 1024 / 1024);
      else
        std::snprintf(buf, sizeof(buf), "%.2f GiB", s / 1024 / 1024 / 1024);
      return buf;
    }
    if (f == "params") {
      const double n = static_cast<double>(t.info.n_params);
      if (t.info.n_params < 1000000000ull)
        std::snprintf(buf, sizeof(buf), "%.2f M", n / 1e6);
      else
        std::snprintf(buf, sizeof(buf), "%.2f B", n / 1e9);
      return buf;
    }
    if (f == "backend") return backend_;
    if (f == "threads") return std::to_string(t.n_threads);
    if (f == "n_batch") return std::to_string(t.n_batch);
    if (f == "n_ubatch") return std::to_string(t.n_ubatch);
    if (f == "test") return t.name();
    if (f == "vs read") {
      if (t.read_s.empty()) return "-";
      const auto v = t.vs_read();
      std::snprintf(buf, sizeof(buf), "%.0f%% ± %.0f", 100 * mean(v), 100 * stddev(v));
      return buf;
    }
    const auto ts = t.ts();
    std::snprintf(buf, sizeof(buf), "%.2f ± %.2f", mean(ts), stddev(ts));
    return buf;
  }
  // llama-bench's JSON keys where they apply (the GPU, split and offload ones do not), plus this
  // engine's kernel level, numerics and repack.
  nlohmann::ordered_json to_json(const Test& t) const {
    std::vector<double> ns(t.samples_ns.begin(), t.samples_ns.end());
    const auto ts = t.ts();
    nlohmann::ordered_json j;
    j["build_commit"] = "qengine";
    j["cpu_info"] = cpu_;
    j["backends"] = "CPU";
    j["model_filename"] = t.model_filename;
    j["model_type"] = t.info.desc;
    j["model_size"] = t.info.size;
    j["model_n_params"] = t.info.n_params;
    j["n_batch"] = t.n_batch;
    j["n_ubatch"] = t.n_ubatch;
    j["n_threads"] = t.n_threads;
    j["type_k"] = "f16";
    j["type_v"] = "f16";
    j["use_mmap"] = true;
    j["n_prompt"] = t.n_prompt;
    j["n_gen"] = t.n_gen;
    j["n_depth"] = t.n_depth;
    j["test_time"] = t.test_time;
    j["avg_ns"] = static_cast<uint64_t>(std::llround(mean(ns)));
    j["stddev_ns"] = static_cast<uint64_t>(std::llround(stddev(ns)));
    j["avg_ts"] = mean(ts);
    j["stddev_ts"] = stddev(ts);
    j["samples_ns"] = t.samples_ns;
    j["samples_ts"] = ts;
    j["isa"] = std::string(kernels::isa_name(kernels::active_isa()));
    j["numerics"] = p_.numerics;
    j["repack"] = p_.repack;
    if (!t.read_s.empty()) {  // --vs-read
      std::vector<double> read_ts;
      for (double s : t.read_s) read_ts.push_back(t.n_gen / s);
      j["token_bytes"] = t.info.token_bytes;
      const std::vector<double> vs = t.vs_read();
      j["samples_read_ts"] = read_ts;
      j["samples_vs_read"] = vs;
      j["avg_vs_read"] = mean(vs);
    }
    return j;
  }

  const Params& p_;
  std::string backend_, cpu_;
  std::vector<std::string> fields_;
  bool first_ = true;
};

}  // namespace

bool wants_model_bench(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-m" || a == "--model") return true;
  }
  return false;
}

int run_model_bench(int argc, char** argv) {
  Params p;
  if (auto code = parse_args(argc, argv, p)) return *code;
  if (Status st = cli::choose_isa(p.isa); !st) {
    std::fprintf(stderr, "qbench: --isa: %s\n", st.error().reason.c_str());
    return 2;
  }
  const bool llamacpp = p.numerics == "llama.cpp";
  std::string backend = "CPU (" + std::string(kernels::isa_name(kernels::active_isa())) +
                        (llamacpp ? ", llama.cpp numerics" : "") + (p.repack ? "" : ", no repack") + ")";
  if (p.verbose) std::fprintf(stderr, "qbench: %s\n", kernels::describe_isa().c_str());

  struct Case {
    int n_prompt, n_gen;
  };
  std::vector<Case> cases;
  for (int n : p.n_prompt)
    if (n > 0) cases.push_back({n, 0});
  for (int n : p.n_gen)
    if (n > 0) cases.push_back({0, n});
  for (auto [pp, tg] : p.n_pg)
    if (pp > 0 || tg > 0) cases.push_back({pp, tg});

  Printer out(p, backend);
  out.header();
  std::mt19937 rng(1234);  // token ids only: which ids is immaterial to the speed
  const size_t n_inst = p.models.size() * p.n_batch.size() * p.n_ubatch.size() * p.n_threads.size() *
                        p.n_depth.size() * cases.size();
  size_t idx = 0;
  for (const std::string& path : p.models) {
    model::ModelOptions mo;
    mo.numerics = llamacpp ? model::Numerics::llamacpp : model::Numerics::fast;
    mo.repack = p.repack && !llamacpp;
    mo.n_threads = p.n_threads.front();
    auto opened = model::open_model(path, mo);
    if (!opened) {
      std::fprintf(stderr, "qbench: %s\n", opened.error().message().c_str());
      return 1;
    }
    model::Model& m = **opened;
    const ModelInfo info = describe(m);
    for (int nb : p.n_batch)
      for (int nub : p.n_ubatch)
        for (int nt : p.n_threads)
          for (int nd : p.n_depth)
            for (const Case& c : cases) {
              ++idx;
              if (p.progress || p.verbose)
                std::fprintf(stderr, "qbench: benchmark %zu/%zu: starting\n", idx, n_inst);
              // Contexts take the thread count from the model when they are made (run state sized per
              // thread), so each test's context sees this instance's count; the weights do not depend on it.
              m.options.n_threads = nt;
              model::ContextParams cp;
              cp.n_ctx = static_cast<int64_t>(c.n_prompt) + c.n_gen + nd;
              cp.n_batch = std::min(nb, nub);
              auto ctx = model::Context::create(m, cp);
              if (!ctx) {
                std::fprintf(stderr, "qbench: %s: %s\n", path.c_str(), ctx.error().message().c_str());
                return 1;
              }
              Test t{path, info, nb, nub, nt, c.n_prompt, c.n_gen, nd, utc_now(), {}, {}};
              if (p.delay_s > 0) std::this_thread::sleep_for(std::chrono::seconds(p.delay_s));
              auto check = [&](Status st, const char* what) {
                if (st) return true;
                std::fprintf(stderr, "qbench: %s: %s failed: %s\n", path.c_str(), what,
                             st.error().message().c_str());
                return false;
              };
              const bool read_along = p.vs_read && c.n_prompt == 0 && c.n_gen > 0;
              if (read_along)
                timed_read(static_cast<double>(info.token_bytes), ctx->team());  // its buffer, pages
              if (p.warmup) {
                if (c.n_prompt > 0 && !check(run_prompt(*ctx, c.n_prompt, rng), "warm-up prompt")) return 1;
                if (c.n_gen > 0 && !check(run_gen(*ctx, 1, rng), "warm-up generation")) return 1;
              }
              for (int r = 0; r < p.reps; ++r) {
                ctx->clear();
                if (nd > 0 && !check(run_prompt(*ctx, nd, rng), "depth")) return 1;
                ReadAlong along{static_cast<double>(info.token_bytes), &ctx->team()};
                const uint64_t t0 = now_ns();
                if (c.n_prompt > 0 && !check(run_prompt(*ctx, c.n_prompt, rng), "prompt")) return 1;
                if (c.n_gen > 0 &&
                    !check(run_gen(*ctx, c.n_gen, rng, read_along ? &along : nullptr), "generation"))
                  return 1;
                t.samples_ns.push_back(read_along ? along.decode_ns : now_ns() - t0);
                if (read_along) t.read_s.push_back(along.read_s);
              }
              out.row(t);
            }
  }
  out.footer();
  return 0;
}

}  // namespace qe::bench
