// qconvert: inspect model files (--info) and convert them:
//   qconvert MODEL_DIR -o out.gguf --type q4_0        HF directory -> GGUF
//   qconvert in.gguf -o out.gguf --type q8_0          requantize a GGUF
//   qconvert in.gguf --to-hf DIR [--type bf16]        GGUF -> HF directory
//   qconvert in.gguf -o out.gguf --type q4_0 --imatrix imatrix.gguf    importance-weighted rounding
//   qconvert in.gguf -o out.gguf --method awq_q4_0 --awq calib.txt      activation-aware calibration
//   qconvert in.gguf out.gguf Q8_0 [NTHREADS]         llama-quantize's positional form
// Ctrl-C (SIGINT) or SIGTERM stops a conversion at its next chunk and removes what it wrote (exit 130 / 143);
// a second one exits at once.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "cli/flag_errors.h"
#include "cli/interrupt.h"
#include "cli/llama_flags.h"
#include "cli/qconvert/config_file.h"
#include "cli/qconvert/convert.h"
#include "cli/qconvert/info.h"
#include "cli/qconvert/positional_args.h"
#include "convert/run.h"
#include "convert/types.h"
#include "kernels/threads.h"

namespace {

// The library's errors name the setting (Error::option); these are qconvert's flags for them.
qe::Error with_qconvert_flags(qe::Error e) {
  return qe::cli::with_flags(std::move(e), {{"overwrite", "", " (use --force to overwrite)"},
                                            {"to_hf", "--to-hf", ""},
                                            {"tensor_type", "--tensor-type", ""},
                                            {"allow_requantize", "", " (use --allow-requantize)"},
                                            {"imatrix", "", " (--imatrix)"}});
}

// An integer flag's bounds, worded for people (CLI::Range and NonNegativeNumber print the type's maximum).
CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        int64_t v = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size()) return fmt::format("'{}' is not an integer", s);
        if (v < lo) return fmt::format("must be at least {} (got {})", lo, v);
        if (v > hi) return fmt::format("must be at most {} (got {})", hi, v);
        return "";
      },
      hi >= std::numeric_limits<int>::max() ? fmt::format(">= {}", lo) : fmt::format("{}..{}", lo, hi));
}

constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

constexpr std::pair<std::string_view, std::string_view> kUnsupportedQuantizeFlags[] = {
    {"--include-weights", "the importance matrix applies to every tensor it has an entry for"},
    {"--exclude-weights", "the importance matrix applies to every tensor it has an entry for"},
    {"--prune-layers", "every layer is written"},
    {"--keep-split", "qconvert reads and writes single-file GGUFs"},
};

// CLI11's usage line names one positional; qconvert's are llama-quantize's.
class UsageFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App*, std::string name) const override {
    return fmt::format("Usage: {0} [OPTIONS] INPUT -o OUTPUT.gguf [--type TYPE] | --to-hf DIR\n"
                       "       {0} [OPTIONS] INPUT [OUTPUT.gguf] TYPE [NTHREADS]   (llama-quantize's form; no "
                       "OUTPUT: ggml-model-TYPE.gguf beside INPUT)\n"
                       "       {0} --info PATH [--json] [--hash]\n",
                       name);
  }
};

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f, RLIMIT_FSIZE) the kernel ends the process with SIGXFSZ, before
  // the writer can remove its temporary or say which output did not fit. Ignored, write() fails with
  // EFBIG instead, and the conversion ends as on a full disk: one line naming the output, nothing left.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"qconvert: inspect and convert GGUF / safetensors / Hugging Face models"};
  app.set_version_flag("--version", "qconvert 0.1.0");
  qe::cli::InfoOptions info;
  qe::cli::ConvertOptions conv;
  app.add_option("--info", info.path, "print metadata and the tensor table of PATH (GGUF file, "
                                      "safetensors file or HF model directory)");
  app.add_flag("--json", info.json, "with --info: JSON for machines");
  app.add_flag("--hash", info.hash, "with --info: add the XXH3-64 of each tensor's bytes");
  app.formatter(std::make_shared<UsageFormatter>());
  std::vector<std::string> positionals;
  app.add_option("input", positionals,
                 "INPUT [OUTPUT] [TYPE] [NTHREADS]: the HF model directory or GGUF file to convert, then "
                 "optionally llama-quantize's positionals (same as -o OUTPUT --type TYPE -t NTHREADS; TYPE as "
                 "llama-quantize spells it, any case, or its number: 2 = Q4_0, 7 = Q8_0)");
  app.add_option("-o,--output", conv.output,
                 "output GGUF file (default with INPUT TYPE: ggml-model-TYPE.gguf beside INPUT, as llama-quantize)");
  app.add_option("--to-hf", conv.to_hf, "export a GGUF to a Hugging Face directory DIR (must not exist or be empty)");
  app.add_option("--type", conv.type,
                 fmt::format("llama-quantize's file type, any case: {} (default: F16 from HF, F32 with --to-hf, "
                             "which takes F32, F16 or BF16; required for a GGUF input)",
                             qe::convert::file_type_names()));
  app.add_option("--override-kv", conv.kv_overrides,
                 "KEY=TYPE:VALUE: set a metadata key of the GGUF output, TYPE int, float, bool or str (repeatable; "
                 "written as llama-quantize writes it: int as u32, float as f32)");
  app.add_option("--tensor-type", conv.tensor_types, "REGEX=TYPE: type of tensors whose name matches (repeatable, "
                                                     "the last match wins, as in llama-quantize)");
  app.add_option("--output-tensor-type", conv.output_tensor_type,
                 "TYPE of output.weight (the output projection), over every rule (default: llama-quantize's rule, "
                 "q6_K for quantized file types, q8_0 for Q8_0)");
  app.add_option("--token-embedding-type", conv.token_embedding_type,
                 "TYPE of token_embd.weight, over every rule (default: the file type's)");
  app.add_flag("--leave-output-tensor", conv.leave_output_tensor,
               "keep output.weight in its source type (not (re)quantized)");
  app.add_flag("--pure", conv.pure, "one type for every 2-D tensor (no output-tensor rule)");
  app.add_flag("--allow-requantize", conv.allow_requantize,
               "allow converting tensors that are already quantized below 8 bits (q4_0, q4_1, q6_K)");
  app.add_flag("--force", conv.force, "replace an existing output");
  app.add_option("-t,--threads", conv.n_threads,
                 fmt::format("number of threads (default: the physical cores, {} here)", qe::kernels::default_thread_count()))
      ->check(integer_in(0, std::numeric_limits<int>::max()));
  app.add_option("--report", conv.report, "write a per-tensor JSON report to FILE (types, bytes, rmse, max error)");
  app.add_flag("--card", conv.card, "write a Markdown model card beside the output (out.gguf -> out.md; with --to-hf, "
                                    "the directory's README.md, which always carries the general.* keys)");
  app.add_option("--isa", conv.isa, "kernel level: ref, avx2, avx512, neon (default: best the CPU has)");
  app.add_flag("-v,--verbose", conv.verbose, "more logs on stderr");

  app.add_option("--imatrix", conv.imatrix,
                 "importance matrix (llama-imatrix's GGUF or legacy .dat): q4_0 / q4_1 tensors it has an entry for "
                 "are rounded with ggml's importance-weighted quantizers, as llama-quantize --imatrix does (with "
                 "--awq: used instead of the importance the calibration measures)");
  app.add_option("--awq", conv.awq,
                 "activation-aware calibration on the UTF-8 text CALIB.txt before quantizing (per-channel scales "
                 "folded into norms and weights, clipping, the better rounding per group)");
  app.add_option("--awq-samples", conv.awq_samples, "with --awq: windows of calibration text (default 128)")
      ->check(integer_in(1, kNoMax));
  app.add_option("--awq-ctx", conv.awq_ctx, "with --awq: tokens per window (default 512)")->check(integer_in(16, kNoMax));
  app.add_option("--awq-grid", conv.awq_grid, "with --awq: scale exponents tried, alpha = 0, 1/N .. (N-1)/N (default 20)")
      ->check(integer_in(1, 1000));
  app.add_flag("--no-awq-clip", conv.no_awq_clip, "with --awq: no clipping search");
  app.add_option("--seed", conv.seed, "with --awq: which windows, when the text holds more than --awq-samples (default 0)")
      ->check(integer_in(0, kNoMax));
  app.add_option("--imatrix-out", conv.imatrix_out,
                 "with --awq: also write the calibration's importance matrix (llama-imatrix GGUF) to FILE");
  app.add_option("--method", conv.method,
                 "awq_q4_0, awq_q4_1, awq_q8_0 or awq_f16: --type q4_0 (...) with --awq calibration; needs --awq "
                 "CALIB.txt, and a --type that disagrees is an error (default: none, plain rounding)");
  app.add_option("--config", conv.config,
                 "read settings from a YAML file: keys are the long flag names without dashes (type: q4_0, "
                 "awq-samples: 64, no-awq-clip: true, tensor-type: [attn_v=q8_0], input: DIR, output: out.gguf); "
                 "a flag on the command line overrides the file's value (a list such as tensor-type is replaced, "
                 "not extended); paths are relative to the current directory");
  app.footer("Precedence: command-line flags, then --config FILE.yaml, then the defaults above.\n");

  // llama-quantize's options that have no counterpart here, by name; any other unknown dash-word is
  // "unknown option" (never a misparse: sort_llama_flags sees CLI11's names first).
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    for (const auto& [flag, why] : kUnsupportedQuantizeFlags)
      if (a == flag || (a.size() > flag.size() && a.substr(0, flag.size() + 1) == std::string(flag) + "=")) {
        fmt::print(stderr, "qconvert: {}: llama-quantize's option is not supported here ({})\n", flag, why);
        return 1;
      }
  }
  qe::Result<qe::cli::SortedArgs> sorted = qe::cli::sort_llama_flags(app, argc, argv, {});
  if (!sorted) {
    fmt::print(stderr, "qconvert: {} (see --help)\n", sorted.error().reason);
    return 1;
  }
  std::vector<const char*> sorted_argv;
  for (const std::string& s : sorted->args) sorted_argv.push_back(s.c_str());
  try {
    app.parse(static_cast<int>(sorted_argv.size()), sorted_argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "qconvert: {}\n", e.what());
    return 1;
  }
  // Before the config file, so that OUTPUT and TYPE count as command-line flags (they beat the file's).
  if (qe::Status s = qe::cli::apply_positionals(app, positionals); !s) {
    fmt::print(stderr, "qconvert: {}\n", s.error().message());
    return 1;
  }
  const size_t n_command_line_positionals = positionals.size();
  if (!conv.config.empty()) {
    if (qe::Status s = qe::cli::apply_config_file(app, conv.config); !s) {
      fmt::print(stderr, "qconvert: {}\n", s.error().message());
      return 1;
    }
  }
  conv.args.assign(argv, argv + argc);
  if (n_command_line_positionals == 0 && positionals.size() > 1) {  // a config file's `input: [a, b]`
    fmt::print(stderr, "qconvert: {}: input: one path\n", conv.config);
    return 1;
  }
  if (!positionals.empty()) conv.input = positionals[0];
  if (info.path.empty() && (info.json || info.hash)) {
    fmt::print(stderr, "qconvert: {} goes with --info PATH\n", info.hash ? "--hash" : "--json");
    return 1;
  }

  try {
    qe::Status s;
    if (!info.path.empty()) {
      s = qe::cli::print_info(info);
    } else if (conv.input.empty()) {
      fmt::print(stderr, "qconvert: nothing to do: give --info PATH, or INPUT with -o OUT.gguf or --to-hf DIR, or "
                       "INPUT [OUTPUT.gguf] TYPE\n");
      return 1;
    } else {
      // Only around a conversion, which asks between chunks: elsewhere (--info) Ctrl-C ends qconvert at once.
      qe::cli::install_interrupt_handlers();
      s = qe::cli::run_conversion(conv);
    }
    if (!s) {
      fmt::print(stderr, "qconvert: {}\n", with_qconvert_flags(s.error()).message());
      // Stopped by a signal: exit as a shell reports the process the signal ended (130 for SIGINT).
      if (qe::convert::is_interrupted(s.error())) {
        const int sig = qe::cli::interrupt_signal();
        return 128 + (sig != 0 ? sig : SIGINT);
      }
      return 1;
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "qconvert: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "qconvert: {}\n", e.what());
    return 1;
  }
  return 0;
}
