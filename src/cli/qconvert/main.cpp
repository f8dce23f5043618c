// qconvert: inspect model files (--info) and convert them:
//   qconvert MODEL_DIR -o out.gguf --type q4_0        HF directory -> GGUF
//   qconvert in.gguf -o out.gguf --type q8_0          requantize a GGUF
//   qconvert in.gguf --to-hf DIR [--type bf16]        GGUF -> HF directory
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <new>
#include <utility>

#include "cli/flag_errors.h"
#include "cli/qconvert/convert.h"
#include "cli/qconvert/info.h"

namespace {

// The library's errors name the setting (Error::option); these are qconvert's flags for them.
qe::Error with_qconvert_flags(qe::Error e) {
  return qe::cli::with_flags(std::move(e), {{"overwrite", "", " (use --force to overwrite)"},
                                            {"to_hf", "--to-hf", ""},
                                            {"tensor_type", "--tensor-type", ""},
                                            {"allow_requantize", "", " (use --allow-requantize)"}});
}

}  // namespace

int main(int argc, char** argv) {
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
      ->check(CLI::NonNegativeNumber);
  app.add_option("--report", conv.report, "write a per-tensor JSON report (types, bytes, rmse, max error)");
  app.add_flag("--card", conv.card, "write a Markdown model card beside the output (out.gguf -> out.md)");
  app.add_option("--isa", conv.isa, "kernel level: ref, avx2, avx512, neon (default: best the CPU has)");
  app.add_flag("-v,--verbose", conv.verbose, "more logs on stderr");

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
