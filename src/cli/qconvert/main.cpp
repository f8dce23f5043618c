// qconvert: inspect model files (--info) and convert them:
//   qconvert MODEL_DIR -o out.gguf --type q4_0        HF directory -> GGUF
//   qconvert in.gguf -o out.gguf --type q8_0          requantize a GGUF
//   qconvert in.gguf --to-hf DIR [--type bf16]        GGUF -> HF directory
//   qconvert in.gguf -o out.gguf --type q4_0 --imatrix imatrix.gguf    importance-weighted rounding
//   qconvert in.gguf -o out.gguf --method awq_q4_0 --awq calib.txt      activation-aware calibration
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <exception>
#include <limits>
#include <new>
#include <utility>

#include "cli/flag_errors.h"
#include "cli/qconvert/config_file.h"
#include "cli/qconvert/convert.h"
#include "cli/qconvert/info.h"

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
  app.add_option("input", conv.input, "HF model directory or GGUF file to convert");
  app.add_option("-o,--output", conv.output, "output GGUF file");
  app.add_option("--to-hf", conv.to_hf, "export a GGUF to a Hugging Face directory DIR (must not exist or be empty)");
  app.add_option("--type", conv.type,
                 "output type: f32 f16 bf16 q8_0 q4_0 q4_1 (default f16 from HF, f32 with --to-hf; "
                 "--to-hf takes f32 f16 bf16)");
  app.add_option("--tensor-type", conv.tensor_types, "REGEX=TYPE: type of tensors whose name matches (repeatable, "
                                                     "first match wins)");
  app.add_flag("--pure", conv.pure, "one type for every 2-D tensor (no output-tensor rule)");
  app.add_flag("--allow-requantize", conv.allow_requantize,
               "allow converting tensors that are already quantized below 8 bits (q4_0, q4_1, q6_K)");
  app.add_flag("--force", conv.force, "replace an existing output");
  app.add_option("-t,--threads", conv.n_threads, "number of threads (default: physical cores)")
      ->check(integer_in(0, std::numeric_limits<int>::max()));
  app.add_option("--report", conv.report, "write a per-tensor JSON report (types, bytes, rmse, max error)");
  app.add_flag("--card", conv.card, "write a Markdown model card beside the output (out.gguf -> out.md)");
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
                 "CALIB.txt, and a --type that disagrees is an error");
  app.add_option("--config", conv.config,
                 "read settings from a YAML file: keys are the long flag names without dashes (type: q4_0, "
                 "awq-samples: 64, no-awq-clip: true, tensor-type: [attn_v=q8_0], input: DIR, output: out.gguf); "
                 "a flag on the command line overrides the file's value (a list such as tensor-type is replaced, "
                 "not extended); paths are relative to the current directory");
  app.footer("Precedence: command-line flags, then --config FILE.yaml, then the defaults above.\n");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "qconvert: {}\n", e.what());
    return 1;
  }
  if (!conv.config.empty()) {
    if (qe::Status s = qe::cli::apply_config_file(app, conv.config); !s) {
      fmt::print(stderr, "qconvert: {}\n", s.error().message());
      return 1;
    }
  }
  for (int i = 0; i < argc; ++i) conv.command_line += (i ? " " : "") + std::string(argv[i]);

  try {
    qe::Status s;
    if (!info.path.empty()) {
      s = qe::cli::print_info(info);
    } else if (conv.input.empty()) {
      fmt::print(stderr, "qconvert: nothing to do: give --info PATH, or INPUT with -o OUT.gguf or --to-hf DIR\n");
      return 1;
    } else {
      s = qe::cli::run_conversion(conv);
    }
    if (!s) {
      fmt::print(stderr, "qconvert: {}\n", with_qconvert_flags(s.error()).message());
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
