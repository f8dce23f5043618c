// qconvert: inspect model files (--info); conversion lands with the qconvert issue.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cli/qconvert/info.h"

int main(int argc, char** argv) {
  CLI::App app{"qconvert: inspect and convert GGUF / safetensors / Hugging Face models"};
  app.set_version_flag("--version", "qconvert 0.1.0");
  qe::cli::InfoOptions info;
  app.add_option("--info", info.path, "print metadata and the tensor table of PATH (GGUF file, "
                                      "safetensors file or HF model directory)")
      ->required();
  app.add_flag("--json", info.json, "with --info: JSON for machines");
  app.add_flag("--hash", info.hash, "with --info: add the XXH3-64 of each tensor's bytes");
  CLI11_PARSE(app, argc, argv);

  qe::Status s = qe::cli::print_info(info);
  if (!s) {
    fmt::print(stderr, "qconvert: {}\n", s.error().message());
    return 1;
  }
  return 0;
}
